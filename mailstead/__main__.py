"""`python -m mailstead <command>`: the deploy machine's helper commands.

  hash-password        turn a password into a Dovecot hash for group_data (users[].password_hash)
  dns plan|apply       show / push the DNS records of an environment (--env ENV)
  dkim ...             list, rotate, activate, retire DKIM keys
  settings-reference   print the settings reference (Markdown) that README.md carries
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "help"
    if command == "hash-password":
        from mailstead.passwords import main as run
    elif command == "dns":
        from mailstead.dns.cli import main as run
    elif command == "dkim":
        from mailstead.dkim import main as run
    elif command == "settings-reference":
        from mailstead.settings import settings_reference_markdown

        print(settings_reference_markdown())
        return 0
    else:
        print(__doc__)
        return 0 if command in ("help", "-h", "--help") else 2
    return run(argv) or 0


if __name__ == "__main__":
    sys.exit(main())
