"""The day-2 commands on the lab's staging environment: `user add`, `user passwd` and `alias add` edit the
environment's group_data file (here tests/lab/group_data/staging.py, restored afterwards) and deploy only
OpenSMTPD's tables and Dovecot's users file to the environment's mail host.

- user add -> the deploy touches only those two stages; the new user receives mail and logs in over IMAP;
- user passwd -> the old password fails, the new one works;
- alias add -> mail to the alias reaches its target, and smtpd was not restarted (same main PID);
- logs follows that message by its Message-ID; queue show answers;
- with password_hashes_file set, user passwd puts the hash in secrets_dir, not in the group_data file.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailstead import groupdata

from helpers import ROOT, env_host, find_in_maildir, lab_ca, mailstead_cmd, net_python, run_deploy, smtpd_pid, \
    swaks, token

USER = "carol@staging.test"
ALIAS = "helpdesk@staging.test"
GROUP_DATA = ROOT / "tests" / "lab" / "group_data" / "staging.py"

LOGIN_SCRIPT = r"""
import imaplib, ssl
ctx = ssl.create_default_context(cafile=ARGS["ca"])
m = imaplib.IMAP4_SSL(ARGS["ip"], 993, ssl_context=ctx, timeout=30)
try:
    print(json.dumps({"login": m.login(ARGS["user"], ARGS["password"])[0]}))
except imaplib.IMAP4.error as exc:
    print(json.dumps({"login": "NO", "error": str(exc)}))
"""


def _login(lab, host, status, pw) -> str:
    return net_python(lab, LOGIN_SCRIPT, {"ip": host["ipv4"], "ca": lab_ca(status), "user": USER,
                                          "password": pw})["login"]


def _deliver(lab, host, rcpt) -> str:
    t = token()
    proc = swaks(lab, "--server", host["ipv4"], "--from", "sender@outside.example", "--to", rcpt,
                 "--header", f"Subject: day2 {t}", "--header", f"Message-Id: <{t}@outside.example>",
                 "--body", f"hello {t}")
    assert "250 2.0.0" in proc.stdout, proc.stdout
    return t


def test_user_add_passwd_and_alias_add(lab, deployed, status, mail_hosts):
    host = env_host(mail_hosts, "staging")
    original = GROUP_DATA.read_text()
    try:
        pid = smtpd_pid(lab, "mail-staging")
        run = mailstead_cmd("user", "add", USER, "--quota", "1G", input_text="first-Pass-word-1\n")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        out = run.stdout + run.stderr  # pyinfra's operation table is on stderr
        assert "Dovecot users (passwd-file)" in out and "smtpd table recipients" in out, out[-3000:]
        for other_stage in ("nginx", "DKIM", "chrony", "sshd"):
            assert other_stage not in out, f"the users-only deploy ran {other_stage} operations"
        print(f"user add + deploy: {run.seconds:.1f} s")
        t = _deliver(lab, host, USER)
        assert find_in_maildir(lab, "mail-staging", USER, t), "the new user did not receive mail"
        assert _login(lab, host, status, "first-Pass-word-1") == "OK"

        run = mailstead_cmd("user", "passwd", USER, input_text="second-Pass-word-2\n")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert _login(lab, host, status, "first-Pass-word-1") == "NO"
        assert _login(lab, host, status, "second-Pass-word-2") == "OK"

        run = mailstead_cmd("alias", "add", ALIAS, USER)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        t = _deliver(lab, host, ALIAS)
        assert find_in_maildir(lab, "mail-staging", USER, t), "mail to the new alias did not reach its target"
        assert smtpd_pid(lab, "mail-staging") == pid, "smtpd restarted for a users/alias change"

        # `logs` follows that message from its Message-ID through smtpd and Dovecot
        run = mailstead_cmd("logs", "--host", "mail.staging.test", f"<{t}@outside.example>")
        assert run.returncode == 0, run.stderr[-2000:]
        assert "smtp connected" in run.stdout and f"to=<{ALIAS}>" in run.stdout, run.stdout
        assert f"lmtp({USER})" in run.stdout and f"msgid=<{t}@outside.example>" in run.stdout, run.stdout
        assert mailstead_cmd("queue", "show", "--host", "mail.staging.test").returncode == 0

        # with password_hashes_file set, `user passwd` keeps the hash out of git (in secrets_dir)
        GROUP_DATA.write_text(GROUP_DATA.read_text() + "\npassword_hashes_file = 'day2-test-hashes.json'\n")
        run = mailstead_cmd("user", "passwd", USER, input_text="third-Pass-word-3\n")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        hashes = Path(status["state_dir"]) / "secrets" / "day2-test-hashes.json"
        assert USER in json.loads(hashes.read_text()) and oct(hashes.stat().st_mode)[-3:] == "600"
        assert "password_hash" not in groupdata.read_block(GROUP_DATA.read_text())[0][USER]
        assert _login(lab, host, status, "second-Pass-word-2") == "NO"
        assert _login(lab, host, status, "third-Pass-word-3") == "OK"
    finally:
        GROUP_DATA.write_text(original)
        back = run_deploy("--limit", "staging", env={"MAILSTEAD_STAGES": "opensmtpd,dovecot"})
        assert back.returncode == 0, back.stderr[-3000:]
