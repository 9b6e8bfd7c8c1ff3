"""Backups with restic to the lab's SFTP repository (infra host) and `restore --user`: one user's deleted
messages come back (found again by IMAP SEARCH, body search too: the full-text index is rebuilt), while another
user's mailbox is left as it is now (a message deleted after the backup stays deleted, one that arrived after
it stays).

Then the same through an S3-compatible server (moto's server mode from Debian's python3-moto, https, on infra):
staging's backup stage switched to `s3:https://infra.lab.test:9000/...` with an access key in secrets_dir
(run_tasks: the real backup stage, the setting changed for this run only), `backup now` to the bucket (every
request signed with that key), `backup status`, `restore --user` from it; then the backup stage as group_data
says (SFTP) again."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import (env_host, lab_ca, mailstead_cmd, net_python, password, run_tasks, s3_requests, s3_server,
                     s3_stop, swaks, token)

ALICE, BOB = "alice@staging.test", "bob@staging.test"

IMAP = r"""
import imaplib, ssl
ctx = ssl.create_default_context(cafile=ARGS["ca"])
m = imaplib.IMAP4_SSL(ARGS["ip"], 993, ssl_context=ctx, timeout=30)
m.login(ARGS["user"], ARGS["password"])
m.select("INBOX")
out = {}
for t in ARGS["tokens"]:
    typ, subj = m.search(None, "SUBJECT", t)
    typ, body = m.search(None, "BODY", "body" + t)
    out[t] = [len(subj[0].split()), len(body[0].split())]
    if ARGS.get("delete"):
        for n in subj[0].split():
            m.store(n, "+FLAGS", "\\Deleted")
if ARGS.get("delete"):
    m.expunge()
m.logout()
print(json.dumps(out))
"""


def _send(lab, host, rcpt: str) -> str:
    t = token()
    proc = swaks(lab, "--server", host["ipv4"], "--from", "sender@outside.example", "--to", rcpt,
                 "--header", f"Subject: backup {t}", "--body", f"hello body{t}")
    assert "250 2.0.0" in proc.stdout, proc.stdout
    return t


def _imap(lab, host, status, user, tokens, delete=False) -> dict:
    import time

    for _ in range(20):  # delivery is asynchronous
        out = net_python(lab, IMAP, {"ip": host["ipv4"], "ca": lab_ca(status), "user": user,
                                     "password": password(status, user), "tokens": tokens, "delete": delete})
        if delete or all(v[0] for v in out.values()):
            return out
        time.sleep(0.5)
    return out


def test_restore_user_brings_back_one_users_deleted_mail_only(lab, deployed, status, mail_hosts):
    host = env_host(mail_hosts, "staging")
    a = [_send(lab, host, ALICE) for _ in range(2)]
    b1 = _send(lab, host, BOB)
    assert _imap(lab, host, status, ALICE, a) == {t: [1, 1] for t in a}
    assert _imap(lab, host, status, BOB, [b1]) == {b1: [1, 1]}

    run = mailstead_cmd("backup", "now", "--host", "mail.staging.test", timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    run = mailstead_cmd("backup", "status", "--env", "staging")
    assert run.returncode == 0 and "ok       mail.staging.test" in run.stdout, run.stdout + run.stderr

    _imap(lab, host, status, ALICE, a, delete=True)
    _imap(lab, host, status, BOB, [b1], delete=True)
    b2 = _send(lab, host, BOB)
    assert _imap(lab, host, status, ALICE, a) == {t: [0, 0] for t in a}

    run = mailstead_cmd("restore", "--host", "mail.staging.test", "--user", ALICE, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    print(f"restore --user: {run.seconds:.1f} s")
    assert _imap(lab, host, status, ALICE, a) == {t: [1, 1] for t in a}, "alice's mail did not come back"
    bob = _imap(lab, host, status, BOB, [b1, b2])
    assert bob[b1] == [0, 0], "restore --user alice brought back bob's deleted message"
    assert bob[b2] == [1, 1], "restore --user alice lost bob's new message"


S3_TASKS = """
from mailstead.settings.backup import Backup
from tasks import backup
repository = {repository!r}
if repository:
    settings = settings.model_copy(update={{"backup": Backup(repository=repository)}})
backup.deploy(settings, env, results)
"""


def test_backup_and_restore_user_through_an_s3_server(lab, deployed, status, mail_hosts, tmp_path):
    host = env_host(mail_hosts, "staging")
    url = s3_server(lab, status)
    key_id, secret = "AKIA" + token().upper()[:16], token() + "/" + token()
    cred = Path(status["state_dir"]) / "secrets" / "backup" / "mail.staging.test.s3-credentials"
    cred.write_text(f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n")
    os.chmod(cred, 0o600)
    try:
        run = run_tasks(tmp_path, "mail.staging.test",
                        S3_TASKS.format(repository="s3:" + url + "/mailstead-lab/{fqdn}"))
        assert run.returncode == 0, run.stderr[-3000:]
        assert secret not in run.stdout + run.stderr and key_id not in run.stdout + run.stderr
        mode = lab.exec("mail-staging", "stat", "-c", "%a %U", "/etc/mailstead/backup/s3-credentials").stdout
        assert mode.split() == ["600", "root"], mode

        a = [_send(lab, host, ALICE)]
        assert _imap(lab, host, status, ALICE, a) == {t: [1, 1] for t in a}
        run = mailstead_cmd("backup", "now", "--host", "mail.staging.test", timeout=240)
        assert run.returncode == 0, run.stdout + run.stderr
        print(f"backup now to S3: {run.seconds:.1f} s")
        run = mailstead_cmd("backup", "status", "--env", "staging")
        assert run.returncode == 0 and "ok       mail.staging.test" in run.stdout, run.stdout + run.stderr
        reqs = s3_requests(lab)
        puts = [r for r in reqs if r["method"] == "PUT" and "/mailstead-lab/mail.staging.test/data/" in r["url"]]
        assert puts, [f"{r['method']} {r['url']}" for r in reqs][:20]
        signed = [r for r in reqs if f"Credential={key_id}/" in r["headers"].get("Authorization", "")]
        assert len(signed) == len(reqs), "a request to the S3 server was not signed with the key of secrets_dir"

        _imap(lab, host, status, ALICE, a, delete=True)
        assert _imap(lab, host, status, ALICE, a) == {t: [0, 0] for t in a}
        run = mailstead_cmd("restore", "--host", "mail.staging.test", "--user", ALICE, timeout=240)
        assert run.returncode == 0, run.stdout + run.stderr
        print(f"restore --user from S3: {run.seconds:.1f} s")
        assert _imap(lab, host, status, ALICE, a) == {t: [1, 1] for t in a}, "alice's mail did not come back from S3"
    finally:
        lab.exec("mail-staging", "systemctl", "stop", "mailstead-backup.service", check=False)  # if it hangs
        cred.unlink(missing_ok=True)
        back = run_tasks(tmp_path, "mail.staging.test", S3_TASKS.format(repository=None))
        s3_stop(lab, status)
        assert back.returncode == 0, back.stderr[-3000:]
    assert lab.exec("mail-staging", "test", "-e", "/etc/mailstead/backup/s3-credentials", check=False).returncode == 1
