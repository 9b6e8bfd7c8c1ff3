"""Spamtraps against real senders: a real Postfix (on infra, the outside world) passes trap-first and delivers
through the real MX at once; a bot that talks to trap-last gets a 4xx, nothing is stored anywhere, and its
address reaches the mail host's map file while the Postfix peer's does not; `mailstead traps` shows both.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from lablib import topology

from helpers import LAB_INVENTORY, LABCTL, ROOT, env_host, find_in_maildir, swaks, token

MAP_FILE = "/var/lib/mailstead/spamtrap-sources.map"
FIRST_MAP_FILE = "/var/lib/mailstead/spamtrap-first-sources.map"
BOT = topology.OUTSIDE_POOL_V4[8]


def publish(lab, prod: str) -> None:
    """What the timers do every minute, now: the traps publish their lists, the mail host fetches them."""
    for trap in ("trap1", "trap2"):
        lab.exec(trap, "systemctl", "start", "mailstead-spamtrap-collect.service")
    lab.exec(prod, "systemctl", "start", "mailstead-spamtrap-pull.service")


def rspamd_line(lab, host: str, message_id: str, timeout: float = 20) -> str:
    """rspamd's log line of the message with this Message-ID (its symbols are in it)."""
    deadline = time.monotonic() + timeout
    while True:
        out = lab.exec(host, "sh", "-c", f"grep -h -F -- '<{message_id}>' /var/log/rspamd/rspamd.log || true").stdout
        if "MAILSTEAD_" in out or "default:" in out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def reload_rspamd(lab, host: str) -> None:
    """What rspamd's own map watch does within a minute: read the map file again."""
    lab.exec(host, "systemctl", "reload", "rspamd")
    deadline = time.monotonic() + 30
    while lab.exec(host, "rspamc", "stat", check=False).returncode != 0:
        assert time.monotonic() < deadline, "rspamd does not answer"
        time.sleep(0.5)
    time.sleep(1)


def nothing_stored(lab) -> None:
    assert ":25 " not in lab.exec("trap1", "ss", "-Hltn").stdout  # trap-first runs no SMTP server at all
    assert lab.exec("trap2", "smtpctl", "show", "queue").stdout.strip() == ""
    assert lab.exec("trap2", "find", "/var/spool/smtpd/queue", "/var/spool/smtpd/incoming", "-type", "f",
                    check=False).stdout.strip() == ""


def test_a_real_postfix_passes_trap_first_and_delivers_through_the_real_mx(lab, postfix, mail_hosts):
    prod = env_host(mail_hosts, "production")
    tok = token()
    since = lab.exec("infra", "date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    t0 = time.monotonic()
    lab.exec("infra", "sendmail", "-f", "peer@lab.test", "alice@production.test",
             input=f"From: peer@lab.test\nTo: alice@production.test\nSubject: {tok}\n\nvia Postfix\n")
    assert find_in_maildir(lab, prod["name"], "alice@production.test", tok, timeout=30)
    seconds = time.monotonic() - t0
    log = lab.exec("infra", "journalctl", "SYSLOG_IDENTIFIER=postfix/smtp", "--since", since, "--no-pager",
                   "-o", "cat").stdout
    print(f"Postfix: submitted → in alice's INBOX in {seconds:.2f} s\n{log}")
    assert re.search(r"connect to trap1\.production\.test\[[0-9a-f.:]+\]:25: Connection refused", log), log
    sent = re.search(r"relay=mail\.production\.test\[[0-9a-f.:]+\]:25, delay=([0-9.]+),.* status=sent", log)
    assert sent, log
    assert float(sent.group(1)) < 2.0 and seconds < 5.0, (sent.group(0), seconds)
    assert "trap2" not in log  # the real MX answered: trap-last was never tried
    nothing_stored(lab)


def test_a_bot_at_trap_last_gets_4xx_and_lands_in_the_mail_hosts_map(lab, postfix, mail_hosts):
    prod = env_host(mail_hosts, "production")
    trap2 = next(h for h in lab.status()["hosts"] if h.get("spamtrap_position") == "last")
    bot = swaks(lab, "--server", trap2["ipv4"], "--local-interface", BOT, "--helo", "bot.spam.example",
                "--from", "bot@spam.example", "--to", "alice@production.test")
    assert re.search(r"^<\*\* +451 4\.7\.1 ", bot.stdout, re.M), bot.stdout[-1500:]
    assert " 250 2.0.0" not in bot.stdout.split("RCPT TO", 1)[1]  # nothing after RCPT was accepted
    log = lab.exec("trap2", "journalctl", "-u", "opensmtpd", "--no-pager", "-o", "cat").stdout
    assert f"refused src={BOT} helo=bot.spam.example mail-from=<bot@spam.example> " \
           "rcpt-to=<alice@production.test>" in log
    nothing_stored(lab)
    time.sleep(1.5)  # filter-spamtrap writes its list at most once a second
    publish(lab, prod["name"])
    listed = lab.exec(prod["name"], "cat", MAP_FILE).stdout.split()
    assert BOT in listed, listed
    # the Postfix peer tried trap-first (every MTA does): it is counted there, and kept apart from the bot list
    assert topology.host("infra").ipv4 not in listed, listed
    first = lab.exec(prod["name"], "cat", FIRST_MAP_FILE).stdout.split()
    assert topology.host("infra").ipv4 in first, first
    assert lab.exec(prod["name"], "stat", "-c", "%a %U", MAP_FILE).stdout.split() == ["644", "root"]

    # the real MX's rspamd scores the bot, not the Postfix peer
    reload_rspamd(lab, prod["name"])
    bot_mid, peer_mid = f"{token()}@spam.example", f"{token()}@lab.test"
    sent = swaks(lab, "--server", prod["ipv4"], "--local-interface", BOT, "--from", "bot@spam.example",
                 "--to", "alice@production.test", "--header", f"Message-Id: <{bot_mid}>")
    assert sent.returncode == 0, sent.stdout[-1500:]
    lab.exec("infra", "sendmail", "-f", "peer@lab.test", "alice@production.test",
             input=f"From: peer@lab.test\nTo: alice@production.test\nMessage-Id: <{peer_mid}>\nSubject: x\n\nhi\n")
    bot_line, peer_line = rspamd_line(lab, prod["name"], bot_mid), rspamd_line(lab, prod["name"], peer_mid)
    assert "MAILSTEAD_SPAMTRAP_SOURCE(" in bot_line, bot_line
    assert peer_line and "MAILSTEAD_SPAMTRAP_SOURCE" not in peer_line, peer_line

    traps = subprocess.run([LABCTL, "net", "--", sys.executable, "-m", "mailstead", "traps", "--inventory",
                            LAB_INVENTORY], cwd=ROOT, capture_output=True, text=True, timeout=120)
    print(traps.stdout)
    assert traps.returncode == 0, traps.stdout + traps.stderr
    assert re.search(r"^trap2\.production\.test \(last\): [1-9][0-9]* hits from", traps.stdout, re.M)
    assert re.search(rf"^ +[1-9][0-9]* +{re.escape(BOT)} +helo=bot\.spam\.example mail=bot@spam\.example",
                     traps.stdout, re.M), traps.stdout


def test_the_feed_account_only_prints_the_list(lab, deployed, mail_hosts, tmp_path):
    """The traps' feed key opens no shell, from the mail host itself either."""
    prod = env_host(mail_hosts, "production")
    trap1 = topology.host("trap1").ipv4
    out = lab.exec(prod["name"], "ssh", "-i", "/etc/mailstead/trapfeed/key", "-o", "BatchMode=yes", "-o",
                   "UserKnownHostsFile=/var/lib/mailstead/trapfeed/known_hosts", f"mailstead-feed@{trap1}",
                   "id; touch /tmp/owned", check=False)
    assert out.stdout.lstrip().startswith("{") and "uid=" not in out.stdout, out.stdout + out.stderr
    assert lab.exec("trap1", "test", "-e", "/tmp/owned", check=False).returncode != 0
    # and from anywhere else the key is refused (from= the mail hosts' addresses)
    key = lab.exec(prod["name"], "cat", "/etc/mailstead/trapfeed/key").stdout
    stolen = tmp_path / "feed-key"
    stolen.touch(mode=0o600)
    stolen.write_text(key)
    try:
        other = lab.net("ssh", "-i", str(stolen), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", f"mailstead-feed@{trap1}", check=False, timeout=60)
        assert other.returncode != 0 and "{" not in other.stdout
    finally:
        stolen.unlink()
