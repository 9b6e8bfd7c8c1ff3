"""`python -m mailstead <command>`: the deploy machine's helper commands.

  hash-password        turn a password into a Dovecot hash for group_data (users[].password_hash)
  dns plan|apply|records   show / push the DNS records of an environment (--env ENV)
  dkim ...             list, rotate, activate, retire DKIM keys
                       (dns and dkim --env read the inventory file given with --inventory FILE, default
                       inventory.py, as pyinfra reads it)
  traps                per-trap hit counts and top sources of the spamtraps (--inventory FILE, --env ENV)
  check                the environment as the outside world sees it, plus failed units, queue and disk over
                       SSH (--env ENV, --json); exit 1 on a problem
  rollout              deploy staging, check it (+ a real round trip), then production and check it (--dry)
  user add|passwd|remove|list, alias add|remove
                       edit the environment's group_data, then deploy only OpenSMTPD's tables and Dovecot's users
  domain add|list      a new mail domain: edit group_data, print its DNS plan (--apply-dns applies it), then deploy
                       only the stages a domain lives in (DKIM, rspamd, OpenSMTPD, Dovecot, nginx, certificate)
  queue show|retry|remove --host HOST, logs --host HOST ID
                       the mail queue (smtpctl) and one message's path through smtpd and Dovecot, over SSH
  backup status|now, restore --host HOST [--user ADDRESS]
                       restic backups of the mail hosts and restoring a host's mail store or one mailbox
  settings-reference   print the settings reference (Markdown); --write README.md updates the README
"""

from __future__ import annotations

import sys


README_START = "<!-- settings-reference:start -->"
README_END = "<!-- settings-reference:end -->"


def readme_with_reference(readme: str) -> str:
    """The README text with the generated settings reference between its two markers."""
    from mailstead.settings import settings_reference_markdown

    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = settings_reference_markdown().split("\n", 1)[1].strip()  # drop its own "## Settings reference"
    return f"{head}{README_START}\n{body}\n{README_END}{tail}"


def settings_reference(argv: list[str]) -> int:
    if argv[:1] == ["--write"] and len(argv) == 2:
        with open(argv[1]) as f:
            text = f.read()
        with open(argv[1], "w") as f:
            f.write(readme_with_reference(text))
        return 0
    from mailstead.settings import settings_reference_markdown

    print(settings_reference_markdown())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "help"
    if command == "hash-password":
        from mailstead.passwords import main as run
    elif command == "dns":
        from mailstead.dns.cli import main as run
    elif command == "check":
        from mailstead.check.cli import main as run
    elif command == "rollout":
        from mailstead.rollout import main as run
    elif command == "user":
        from mailstead.day2 import user_main as run
    elif command == "alias":
        from mailstead.day2 import alias_main as run
    elif command == "domain":
        from mailstead.domain import domain_main as run
    elif command == "queue":
        from mailstead.mailops import queue_main as run
    elif command == "logs":
        from mailstead.mailops import logs_main as run
    elif command == "backup":
        from mailstead.backup import backup_main as run
    elif command == "restore":
        from mailstead.backup import restore_main as run
    elif command == "dkim":
        from mailstead.dkim import main as run
    elif command == "traps":
        from mailstead.spamtrap import main as run
    elif command == "settings-reference":
        return settings_reference(argv)
    else:
        print(__doc__)
        return 0 if command in ("help", "-h", "--help") else 2
    return run(argv) or 0


if __name__ == "__main__":
    sys.exit(main())
