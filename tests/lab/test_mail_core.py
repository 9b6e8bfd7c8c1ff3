"""Mail core on booted Debian 13 hosts: OpenSMTPD (built from source) + Dovecot 2.4, seen from outside.

Every check talks to the daemons the way a sender or a mail client does — swaks and Python's imaplib /
a small ManageSieve client run in the lab's outside world (`lab.net`) — and looks for the result where a
user would (the maildir, the IMAP view), never at template text.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from helpers import (IMAP_SCRIPT, env_host, find_in_maildir, lab_ca, maildir, net_python, password, queue,
                     replies, swaks, token)

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def staging(mail_hosts):
    return env_host(mail_hosts, "staging")


@pytest.fixture(scope="module")
def production(mail_hosts):
    return env_host(mail_hosts, "production")


# ----------------------------------------------------------------------------- inbound SMTP → LMTP → maildir


def test_inbound_mail_for_a_local_user_lands_in_inbox_via_lmtp(lab, deployed, staging):
    t = token()
    proc = swaks(lab, "--server", staging["ipv4"], "--port", "25", "--from", "sender@outside.example",
                 "--to", "alice@staging.test", "--header", f"Subject: inbound {t}", "--body", f"hello {t}")
    assert "250 2.0.0" in proc.stdout and "Message accepted" in proc.stdout, proc.stdout
    path = find_in_maildir(lab, staging["name"], "alice@staging.test", t)
    assert path, "the message never reached alice's maildir"
    assert "/Maildir/new/" in path or "/Maildir/cur/" in path  # INBOX, not a subfolder
    message = lab.exec(staging["name"], "cat", path).stdout
    assert re.search(r"by \S+ with LMTP", message), "not delivered through Dovecot's LMTP"


def test_alias_delivers_to_every_target(lab, deployed, staging):
    t = token()
    proc = swaks(lab, "--server", staging["ipv4"], "--from", "sender@outside.example", "--to", "team@staging.test",
                 "--header", f"Subject: alias {t}")
    assert "Message accepted" in proc.stdout, proc.stdout
    for target in ("alice@staging.test", "bob@staging.test"):
        assert find_in_maildir(lab, staging["name"], target, t), f"alias team@ did not deliver to {target}"


def test_unknown_local_user_gets_550_at_rcpt(lab, deployed, staging):
    proc = swaks(lab, "--server", staging["ipv4"], "--from", "sender@outside.example",
                 "--to", "no-such-user@staging.test", "--quit-after", "RCPT")
    rcpt_reply = replies(proc)[-2]  # the last reply before QUIT's 221
    assert rcpt_reply.startswith("550"), proc.stdout


# ----------------------------------------------------------------------------- ports, TLS, AUTH


def test_port_25_offers_starttls_but_no_auth_before_tls(lab, deployed, staging):
    proc = swaks(lab, "--server", staging["ipv4"], "--port", "25", "--quit-after", "EHLO")
    ehlo = "\n".join(replies(proc))
    assert "STARTTLS" in ehlo
    assert "AUTH" not in ehlo, ehlo


def test_port_587_refuses_mail_before_starttls(lab, deployed, staging, status):
    proc = swaks(lab, "--server", staging["ipv4"], "--port", "587", "--from", "alice@staging.test",
                 "--to", "bob@staging.test")
    mail_reply = next(r for r in replies(proc) if not r.startswith(("220", "250")))
    assert mail_reply.startswith("530"), proc.stdout
    assert "STARTTLS" in mail_reply


def test_port_465_speaks_tls_at_once_with_the_lab_certificate(lab, deployed, staging, status):
    result = net_python(lab, """
import socket, ssl
ctx = ssl.create_default_context(cafile=ARGS["ca"])
with socket.create_connection((ARGS["ip"], 465), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=ARGS["name"]) as s:
        banner = s.recv(512).decode()
        print(json.dumps({"banner": banner, "version": s.version()}))
""", {"ip": staging["ipv4"], "name": staging["name"], "ca": lab_ca(status)})
    assert result["banner"].startswith("220 "), result
    assert result["version"] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("port,tls_flag", [("465", "--tls-on-connect"), ("587", "--tls")])
def test_auth_with_the_users_password_works_and_a_wrong_one_fails(lab, deployed, staging, status, port, tls_flag):
    good = swaks(lab, "--server", staging["ipv4"], "--port", port, tls_flag, "--auth", "PLAIN",
                 "--auth-user", "alice@staging.test", "--auth-password", password(status, "alice@staging.test"),
                 "--from", "alice@staging.test", "--to", "bob@staging.test", "--quit-after", "AUTH")
    assert any(r.startswith("235") for r in replies(good)), good.stdout
    bad = swaks(lab, "--server", staging["ipv4"], "--port", port, tls_flag, "--auth", "PLAIN",
                "--auth-user", "alice@staging.test", "--auth-password", "not-the-password",
                "--from", "alice@staging.test", "--to", "bob@staging.test", "--quit-after", "AUTH")
    assert any(r.startswith("535") for r in replies(bad)), bad.stdout
    assert not any(r.startswith("235") for r in replies(bad))


def test_authenticated_user_cannot_send_as_an_address_it_does_not_own(lab, deployed, staging, status):
    proc = swaks(lab, "--server", staging["ipv4"], "--port", "587", "--tls", "--auth", "PLAIN",
                 "--auth-user", "bob@staging.test", "--auth-password", password(status, "bob@staging.test"),
                 "--from", "alice@staging.test", "--to", "alice@production.test", "--quit-after", "RCPT")
    r = replies(proc)
    assert any(x.startswith("235") for x in r), proc.stdout
    after_auth = r[[i for i, x in enumerate(r) if x.startswith("235")][0] + 1]
    assert after_auth.startswith("5"), proc.stdout


# ----------------------------------------------------------------------------- outbound relay to the other lab env


def test_authenticated_submission_is_relayed_via_mx_to_the_other_environment(lab, deployed, staging, production,
                                                                             status):
    t = token()
    proc = swaks(lab, "--server", staging["ipv4"], "--port", "587", "--tls", "--auth", "PLAIN",
                 "--auth-user", "alice@staging.test", "--auth-password", password(status, "alice@staging.test"),
                 "--from", "alice@staging.test", "--to", "bob@production.test", "--header", f"Subject: relay {t}")
    assert "Message accepted" in proc.stdout, proc.stdout
    path = find_in_maildir(lab, production["name"], "bob@production.test", t, timeout=40)
    assert path, ("the relayed message did not arrive at mail.production.test (does lab DNS publish "
                  f"MX production.test? staging queue:\n{queue(lab, staging['name'])})")
    message = lab.exec(production["name"], "cat", path).stdout
    assert f"from {staging['name']}" in message  # came over SMTP from the staging host
    # mask-src: the submitting client's address is not revealed in the relayed message
    assert "198.51.100.1]" not in message and "2001:db8:51::1]" not in message


# ----------------------------------------------------------------------------- queue durability


def test_queued_message_survives_an_opensmtpd_restart(lab, deployed, staging, status):
    t = token()
    # 198.51.100.99 is inside the lab prefix but no host answers there: the message stays queued
    proc = swaks(lab, "--server", staging["ipv4"], "--port", "587", "--tls", "--auth", "PLAIN",
                 "--auth-user", "alice@staging.test", "--auth-password", password(status, "alice@staging.test"),
                 "--from", "alice@staging.test", "--to", f"{t}@[198.51.100.99]", "--header", f"Subject: {t}")
    assert "Message accepted" in proc.stdout, proc.stdout
    host = staging["name"]
    before = [line for line in queue(lab, host).splitlines() if t in line]
    assert len(before) == 1, queue(lab, host)
    envelope = before[0].split("|")[0]
    try:
        lab.exec(host, "systemctl", "restart", "opensmtpd")
        assert lab.exec(host, "systemctl", "is-active", "opensmtpd", check=False).stdout.strip() == "active"
        after = [line for line in queue(lab, host).splitlines() if t in line]
        assert [line.split("|")[0] for line in after] == [envelope], queue(lab, host)
    finally:
        lab.exec(host, "/opt/opensmtpd/sbin/smtpctl", "remove", envelope, check=False)


# ----------------------------------------------------------------------------- IMAP




def test_imap_login_and_special_use_folders(lab, deployed, staging, status):
    r = net_python(lab, IMAP_SCRIPT, {"ip": staging["ipv4"], "ca": lab_ca(status), "user": "bob@staging.test",
                                      "password": password(status, "bob@staging.test")})
    assert r["login"] == "OK"
    assert r["tls"] in ("TLSv1.2", "TLSv1.3")
    assert "IDLE" in r["capabilities"]
    for name, flag in [("Drafts", "\\Drafts"), ("Sent", "\\Sent"), ("Junk", "\\Junk"), ("Trash", "\\Trash"),
                       ("Archive", "\\Archive")]:
        line = next((f for f in r["folders"] if f.endswith(f'"/" {name}')), None)
        assert line and flag in line, f"{name} missing or without {flag}: {r['folders']}"
        assert any(s.endswith(f'"/" {name}') for s in r["subscribed"]), f"{name} not subscribed"


def test_imap_refuses_plaintext_port_143(lab, deployed, staging):
    """With imap_starttls off nothing serves 143: the outside world gets no connection (the firewall drops it;
    without the firewall the host refuses it) and no process on the host listens there."""
    proc = lab.net("python3", "-c", f"import socket; socket.create_connection(('{staging['ipv4']}', 143), timeout=5)",
                   check=False)
    err = proc.stderr.lower()
    assert proc.returncode != 0 and ("refused" in err or "timed out" in err), proc.stderr
    listening = lab.exec(staging["name"], "ss", "-Htln", "sport = :143").stdout
    assert not listening.strip(), listening


IDLE_SCRIPT = r"""
import imaplib, socket, ssl, subprocess, time
ctx = ssl.create_default_context(cafile=ARGS["ca"])
m = imaplib.IMAP4_SSL(ARGS["ip"], 993, ssl_context=ctx, timeout=30)
m.login(ARGS["user"], ARGS["password"])
m.select("INBOX")
tag = m._new_tag().decode()
m.send(f"{tag} IDLE\r\n".encode())
assert m.readline().startswith(b"+"), "no IDLE continuation"
sent = time.monotonic()
subprocess.run(["swaks", "--server", ARGS["ip"], "--helo", "outside.example", "--from", "idle@outside.example",
                "--to", ARGS["user"], "--header", "Subject: " + ARGS["token"]], capture_output=True, check=True)
m.sock.settimeout(5.0)
seen = None
try:
    while True:
        line = m.readline()
        if b"EXISTS" in line:
            seen = time.monotonic() - sent
            break
except socket.timeout:
    pass
print(json.dumps({"exists_after": seen}))
"""


def test_idle_reports_a_new_message_within_5_seconds(lab, deployed, staging, status):
    r = net_python(lab, IDLE_SCRIPT, {"ip": staging["ipv4"], "ca": lab_ca(status), "user": "bob@staging.test",
                                      "password": password(status, "bob@staging.test"), "token": token()})
    assert r["exists_after"] is not None, "IDLE did not report the new message within 5 s"
    assert r["exists_after"] < 5.0


SEARCH_SCRIPT = r"""
import imaplib, ssl
ctx = ssl.create_default_context(cafile=ARGS["ca"])
m = imaplib.IMAP4_SSL(ARGS["ip"], 993, ssl_context=ctx, timeout=30)
m.login(ARGS["user"], ARGS["password"])
m.select("INBOX", readonly=True)
typ, data = m.search(None, "BODY", ARGS["word"])
uids = data[0].split()
subjects = []
for n in uids:
    typ, d = m.fetch(n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects.append(d[0][1].decode().strip())
typ, none = m.search(None, "BODY", ARGS["absent"])
print(json.dumps({"subjects": subjects, "absent": none[0].decode()}))
"""


def test_search_body_finds_a_word_only_in_the_body_and_flatcurve_indexed_it(lab, deployed, staging, status):
    word = "zq" + uuid.uuid4().hex[:10]  # a word that appears only in this message's body
    subject = "fts " + token()
    proc = swaks(lab, "--server", staging["ipv4"], "--from", "fts@outside.example", "--to", "alice@staging.test",
                 "--header", f"Subject: {subject}", "--body", f"The secret word is {word} and nothing else.")
    assert "Message accepted" in proc.stdout, proc.stdout
    assert find_in_maildir(lab, staging["name"], "alice@staging.test", word)
    r = net_python(lab, SEARCH_SCRIPT, {"ip": staging["ipv4"], "ca": lab_ca(status), "user": "alice@staging.test",
                                        "password": password(status, "alice@staging.test"), "word": word,
                                        "absent": "zq" + uuid.uuid4().hex[:10]})
    assert r["subjects"] == [f"Subject: {subject}"], r
    assert r["absent"] == ""
    # the flatcurve (Xapian) index exists for INBOX and answers the query itself (no fallback scan)
    index = lab.exec(staging["name"], "sh", "-c", f"ls -d {maildir('alice@staging.test')}/fts-flatcurve/*",
                     check=False).stdout
    assert "fts-flatcurve/" in index, "no flatcurve index in alice's INBOX"
    fts = lab.exec(staging["name"], "doveadm", "fts", "lookup", "-u", "alice@staging.test", "mailbox", "INBOX",
                   "body", word, check=False)
    assert fts.returncode == 0 and re.search(r"INBOX: \d+", fts.stdout), fts.stdout + fts.stderr


def test_quota_from_settings_is_applied_per_user(lab, deployed, staging):
    out = lab.exec(staging["name"], "doveadm", "quota", "get", "-u", "alice@staging.test").stdout
    row = next(line for line in out.splitlines() if "STORAGE" in line)
    assert re.search(r"\bSTORAGE\s+\d+\s+1048576\b", row), out  # limit 1G (in KiB) from the lab's users


# ----------------------------------------------------------------------------- ManageSieve → delivery


SIEVE_SCRIPT = r"""
import base64, socket, ssl
def read_response(f):
    lines = []
    while True:
        line = f.readline().decode()
        if not line:
            raise EOFError("connection closed")
        lines.append(line.rstrip("\r\n"))
        if line.startswith(("OK", "NO", "BYE")):
            return lines
s = socket.create_connection((ARGS["ip"], 4190), timeout=20)
f = s.makefile("rb")
greeting = read_response(f)
caps_plain = "\n".join(greeting)
s.sendall(b"STARTTLS\r\n")
assert read_response(f)[-1].startswith("OK"), "STARTTLS refused"
ctx = ssl.create_default_context(cafile=ARGS["ca"])
s = ctx.wrap_socket(s, server_hostname=ARGS["name"])
f = s.makefile("rb")
caps_tls = "\n".join(read_response(f))
auth = base64.b64encode(("\0" + ARGS["user"] + "\0" + ARGS["password"]).encode()).decode()
s.sendall(f'AUTHENTICATE "PLAIN" "{auth}"\r\n'.encode())
auth_reply = read_response(f)[-1]
script = ARGS["script"].encode()
s.sendall(b'PUTSCRIPT "mailstead-test" {' + str(len(script)).encode() + b'+}\r\n' + script + b"\r\n")
put_reply = read_response(f)[-1]
s.sendall(b'SETACTIVE "mailstead-test"\r\n')
active_reply = read_response(f)[-1]
s.sendall(b"LOGOUT\r\n")
print(json.dumps({"plain_caps": caps_plain, "tls_caps": caps_tls, "auth": auth_reply, "put": put_reply,
                  "active": active_reply}))
"""


def test_managesieve_upload_files_the_next_delivery(lab, deployed, staging, status):
    t = token()
    script = ('require ["fileinto", "mailbox"];\n'
              f'if header :contains "subject" "{t}" {{ fileinto :create "Filed"; stop; }}\n')
    r = net_python(lab, SIEVE_SCRIPT, {"ip": staging["ipv4"], "name": staging["name"], "ca": lab_ca(status),
                                       "user": "bob@staging.test", "password": password(status, "bob@staging.test"),
                                       "script": script})
    sasl_before_tls = next((line for line in r["plain_caps"].splitlines() if line.startswith('"SASL"')), '"SASL" ""')
    assert "PLAIN" not in sasl_before_tls and "LOGIN" not in sasl_before_tls, r["plain_caps"]
    assert '"STARTTLS"' in r["plain_caps"]
    assert "PLAIN" in next(line for line in r["tls_caps"].splitlines() if line.startswith('"SASL"'))
    assert r["auth"].startswith("OK"), r
    assert r["put"].startswith("OK"), r
    assert r["active"].startswith("OK"), r
    proc = swaks(lab, "--server", staging["ipv4"], "--from", "sieve@outside.example", "--to", "bob@staging.test",
                 "--header", f"Subject: please file {t}")
    assert "Message accepted" in proc.stdout, proc.stdout
    assert find_in_maildir(lab, staging["name"], "bob@staging.test", t, folder="Filed"), \
        "the message was not filed into 'Filed' by the uploaded Sieve script"
    assert not find_in_maildir(lab, staging["name"], "bob@staging.test", t, timeout=1), "also in INBOX"


# ----------------------------------------------------------------------------- TLS versions


@pytest.mark.parametrize("port,starttls", [(25, "smtp"), (465, None), (587, "smtp"), (993, None), (4190, "sieve")])
def test_tls_1_1_is_refused_and_tls_1_2_accepted(lab, deployed, staging, port, starttls):
    def handshake(version: str) -> str:
        args = ["-connect", f"{staging['ipv4']}:{port}", version, "-cipher", "DEFAULT:@SECLEVEL=0"]
        if starttls:
            args += ["-starttls", starttls]
        return lab.net("sh", "-c", "echo | timeout 20 openssl s_client " + " ".join(args) + " 2>&1",
                       check=False).stdout

    old = handshake("-tls1_1")
    assert "Cipher is (NONE)" in old and "alert protocol version" in old, old[-1500:]
    new = handshake("-tls1_2")
    assert re.search(r"New, TLSv1\.2, Cipher is ECDHE-", new), new[-1500:]
