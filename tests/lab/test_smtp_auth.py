"""SMTP AUTH as an attacker sees it, on the deployed staging host: hostile payloads, password guessing next
to a real user, the TLS a mail client gets, and senders that pretend to be us on port 25.

Everything runs from the lab's outside world. The guessers and the hostile payloads come from outside
addresses of their own (topology.OUTSIDE_ALT_V4 / OUTSIDE_POOL_V4), so what they earn from filter-authguard
stays with them and the rest of the suite (which logs in from the gateway address) is not slowed down.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from lablib import topology

from helpers import env_host, net_python, password, replies, smtpd_pid, swaks

PROBE = Path(__file__).resolve().parent / "lablib" / "auth_load.py"

HOSTILE_SCRIPT = r"""
import base64, smtplib, ssl, socket, threading
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
user = ARGS["user"].encode()
payloads = [b"\xff\xfe\xfd", b"caf\xc3", b"tab\there", b"pipe|found|x", b"a:b:c", b"%s%s%n%x", b"{0}{1}",
            b"\x1b[2J\x07", b"x" * 900, b"\xc0\x80"]
codes = []
def raw(s, line: bytes) -> int:
    s.send(line + b"\r\n")
    return s.getreply()[0]
def attempt(i, pw):
    src = ARGS["sources"][i % len(ARGS["sources"])]
    s = smtplib.SMTP_SSL(ARGS["host"], 465, context=ctx, timeout=60, source_address=(src, 0))
    s.ehlo("hostile.outside.example")
    # PLAIN with the payload as password, and as user name
    codes.append(raw(s, b"AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0" + pw)))
    codes.append(raw(s, b"AUTH PLAIN " + base64.b64encode(b"\0" + pw + b"@staging.test\0" + pw)))
    s.close()
    # LOGIN, the same payload as the password
    s = smtplib.SMTP_SSL(ARGS["host"], 465, context=ctx, timeout=60, source_address=(src, 0))
    s.ehlo("hostile.outside.example")
    if raw(s, b"AUTH LOGIN") == 334 and raw(s, base64.b64encode(user)) == 334:
        codes.append(raw(s, base64.b64encode(pw)))
    s.close()
threads = [threading.Thread(target=attempt, args=(i, pw)) for i, pw in enumerate(payloads)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"codes": codes}))
"""

TLS_SCAN = r"""
import imaplib, socket, ssl, smtplib
def suites():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return sorted({c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"})
def ctx_for(version, cipher=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if cipher:
        ctx.set_ciphers(cipher + ":@SECLEVEL=0")
    else:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx
def handshake(port, ctx):
    try:
        if port == 587:
            s = smtplib.SMTP(ARGS["host"], 587, timeout=10); s.ehlo("scan.outside.example"); s.starttls(context=ctx)
            name = s.sock.cipher()[0]; s.close(); return name
        with socket.create_connection((ARGS["host"], port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                return tls.cipher()[0]
    except (OSError, ssl.SSLError, smtplib.SMTPException):
        return None
out = {}
for port in ARGS["ports"]:
    accepted = [c for c in suites() if handshake(port, ctx_for(ssl.TLSVersion.TLSv1_2, c))]
    old = {v.name: handshake(port, ctx_for(v)) for v in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)}
    out[str(port)] = {"tls12": accepted, "old": old, "tls13": handshake(port, ctx_for(ssl.TLSVersion.TLSv1_3))}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def staging(mail_hosts):
    return env_host(mail_hosts, "staging")


def probe(lab, args: dict) -> dict:
    proc = lab.net("python3", PROBE, json.dumps(args), timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hostile_auth_payloads_get_a_normal_failure_and_smtpd_keeps_running(lab, deployed, staging, status):
    before = smtpd_pid(lab, staging["name"])
    out = net_python(lab, HOSTILE_SCRIPT, {"host": staging["ipv4"], "user": "alice@staging.test",
                                           "sources": list(topology.OUTSIDE_POOL_V4)}, timeout=300)
    # 535: authentication failed; 500/501: smtpd itself refused the line (too long, bad encoding). Never a
    # 4xx "temporary failure" (the table lost its answer) and never a success.
    assert len(out["codes"]) >= 25 and set(out["codes"]) <= {535, 500, 501}, out["codes"]
    assert smtpd_pid(lab, staging["name"]) == before
    ok = swaks(lab, "--server", staging["ipv4"], "--port", "465", "--tlsc", "--auth", "PLAIN", "--auth-user",
               "alice@staging.test", "--auth-password", password(status, "alice@staging.test"),
               "--quit-after", "AUTH")
    assert "235 " in ok.stdout, ok.stdout[-2000:]


def test_a_users_auth_stays_fast_while_another_address_guesses_and_port_25_is_not_delayed(lab, deployed, staging,
                                                                                          status):
    account = {"host": staging["ipv4"], "port": 465, "user": "alice@staging.test",
               "password": password(status, "alice@staging.test"), "guess_user": "alice@staging.test",
               "guess_source": topology.OUTSIDE_ALT_V4, "warmup": 4, "deadline": 240}
    quiet = probe(lab, account | {"guessers": 0, "rounds": 7})
    loaded = probe(lab, account | {"guessers": 8, "rounds": 7,
                                   "probe_25": {"from": "sender@outside.example", "rcpt": "bob@staging.test"}})
    assert all(quiet["ok"]) and all(loaded["ok"]) and len(loaded["auth"]) == 7, loaded
    base, under_load = statistics.median(quiet["auth"]), statistics.median(loaded["auth"])
    assert loaded["guesses"] >= 3, loaded  # the guessers were at it (each answer slowed down by authguard)
    assert "a guess was accepted" not in loaded["errors"]
    assert under_load <= max(2 * base, 0.05) and max(loaded["auth"]) < 3.0, (quiet["auth"], loaded["auth"])
    assert loaded["smtp25"] is not None and loaded["smtp25"] < 2.0, loaded


def test_client_ports_offer_only_aead_suites_on_tls_1_2_and_nothing_older(lab, deployed, staging):
    out = net_python(lab, TLS_SCAN, {"host": staging["ipv4"], "ports": [465, 587, 993]}, timeout=600)
    for port, scan in out.items():
        assert scan["tls12"], f"{port}: no TLS 1.2 suite accepted"
        weak = [c for c in scan["tls12"] if not ("GCM" in c or "CHACHA20" in c)]
        assert not weak, f"{port} accepts non-AEAD suites {weak}"
        assert all("ECDHE" in c for c in scan["tls12"]), f"{port}: {scan['tls12']} (no forward secrecy)"
        assert scan["old"] == {"TLSv1": None, "TLSv1_1": None}, f"{port}: {scan['old']}"
        assert scan["tls13"], f"{port}: TLS 1.3 refused"


def test_port_25_refuses_our_own_domains_as_sender_without_auth(lab, deployed, staging):
    spoof = swaks(lab, "--server", staging["ipv4"], "--from", "alice@staging.test", "--to", "bob@staging.test",
                  "--quit-after", "RCPT")
    # refused at MAIL FROM itself, before any recipient
    assert re.search(r"-> MAIL FROM:<alice@staging\.test>\s*\n<\*\* 550 5\.7\.1 ", spoof.stdout), spoof.stdout
    other = swaks(lab, "--server", staging["ipv4"], "--from", "someone@outside.example", "--to",
                  "bob@staging.test", "--quit-after", "RCPT")
    assert replies(other)[-2].startswith("250"), other.stdout  # RCPT accepted (the last reply is QUIT's)
