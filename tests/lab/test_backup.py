"""Backups with restic to the lab's SFTP repository (infra host) and `restore --user`: one user's deleted
messages come back (found again by IMAP SEARCH, body search too: the full-text index is rebuilt), while another
user's mailbox is left as it is now (a message deleted after the backup stays deleted, one that arrived after
it stays)."""

from __future__ import annotations

from helpers import env_host, lab_ca, mailstead_cmd, net_python, password, swaks, token

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
