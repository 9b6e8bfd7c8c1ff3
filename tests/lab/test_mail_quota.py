"""Per-user quota from settings, enforced by Dovecot at LMTP: an over-quota delivery is refused with 5.2.2 and the
sender gets a bounce saying so; the mailbox does not grow past its limit."""

from __future__ import annotations

import textwrap
from pathlib import Path

from helpers import env_host, find_in_maildir, run_tasks, swaks, token


def _deploy_dovecot_with_quota(tmp_path: Path, host: str, address: str, quota: str | None):
    """The real dovecot stage with one user's quota changed (the test's own deploy file, real pyinfra)."""
    override = "" if quota is None else textwrap.dedent(f"""
        users = [u.model_copy(update={{"quota": {quota!r}}}) if u.address == {address!r} else u
                 for u in env.users]
        env = env.model_copy(update={{"users": users}})
    """)
    run = run_tasks(tmp_path, host, override + "dovecot.deploy(settings, env, results)\n")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]


def test_over_quota_delivery_is_refused_with_5_2_2_and_bounced_to_the_sender(lab, deployed, mail_hosts, tmp_path):
    staging, production = env_host(mail_hosts, "staging"), env_host(mail_hosts, "production")
    rcpt, sender = "bob@staging.test", "alice@production.test"
    _deploy_dovecot_with_quota(tmp_path, staging["name"], rcpt, "1K")
    try:
        limit = lab.exec(staging["name"], "doveadm", "quota", "get", "-u", rcpt).stdout
        storage = next(line.split() for line in limit.splitlines() if " STORAGE " in line)
        assert storage[4] == "1", limit  # limit 1 KiB, read from the users file the stage wrote
        # the first message may still fit (Dovecot's grace lets the last mail cross the limit) ...
        first = token()
        proc = swaks(lab, "--server", staging["ipv4"], "--from", sender, "--to", rcpt,
                     "--header", f"Subject: quota filler {first}", "--body", "x" * 4096)
        assert "Message accepted" in proc.stdout, proc.stdout[-2000:]
        find_in_maildir(lab, staging["name"], rcpt, first, timeout=20)
        # ... but once the mailbox is over quota, the next one is refused at LMTP and bounced to the sender
        t = token()
        proc = swaks(lab, "--server", staging["ipv4"], "--from", sender, "--to", rcpt,
                     "--header", f"Subject: quota {t}", "--body", "over quota " + t)
        assert "Message accepted" in proc.stdout, proc.stdout[-2000:]
        bounce = find_in_maildir(lab, production["name"], sender, t, timeout=60)
        assert bounce, "no bounce reached the sender"
        text = lab.exec(production["name"], "cat", bounce).stdout
        assert "5.2.2" in text and "quota" in text.lower(), text[:3000]
        assert not find_in_maildir(lab, staging["name"], rcpt, "over quota " + t, timeout=1), "stored over quota"
    finally:
        _deploy_dovecot_with_quota(tmp_path, staging["name"], rcpt, None)
    limit = lab.exec(staging["name"], "doveadm", "quota", "get", "-u", rcpt).stdout
    storage = next(line.split() for line in limit.splitlines() if " STORAGE " in line)
    assert storage[4] == "1048576", limit  # back to the lab's 1G
