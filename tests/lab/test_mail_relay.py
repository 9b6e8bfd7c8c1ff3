"""No open relay: every classic trick to make the staging MX relay for a stranger is refused, nothing is queued.

The relay targets are real lab mailboxes of the *other* environment (production.test), so a relay that
slipped through would really deliver: the test also checks that nothing arrived there.
"""

from __future__ import annotations

import base64
import time

import pytest

from helpers import env_host, find_in_maildir, net_python, password, queue, token

DIALOG_SCRIPT = r"""
import socket, ssl
def reply(f):
    lines = []
    while True:
        line = f.readline().decode(errors="replace")
        if not line:
            return "000 connection closed"
        lines.append(line.rstrip("\r\n"))
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)
ctx = ssl.create_default_context(cafile=ARGS["ca"])
raw = socket.create_connection((ARGS["ip"], ARGS["port"]), timeout=20)
s = ctx.wrap_socket(raw, server_hostname=ARGS["name"]) if ARGS["mode"] == "smtps" else raw
f = s.makefile("rb")
log = [["<connect>", reply(f)]]
def cmd(c):
    global s, f
    s.sendall((c + "\r\n").encode())
    r = reply(f)
    log.append([c, r])
    return r
cmd("EHLO outside.example")
if ARGS["mode"] == "starttls":
    if cmd("STARTTLS").startswith("220"):
        s = ctx.wrap_socket(s, server_hostname=ARGS["name"])
        f = s.makefile("rb")
        cmd("EHLO outside.example")
for c in ARGS["commands"]:
    r = cmd(c)
    if c == "DATA" and r.startswith("354"):
        s.sendall(("Subject: " + ARGS["token"] + "\r\n\r\nrelay attempt " + ARGS["token"] + "\r\n.\r\n").encode())
        log.append(["<message>", reply(f)])
cmd("QUIT")
print(json.dumps(log))
"""


def dialog(lab, host: dict, status: dict, port: int, mode: str, commands: list[str], t: str) -> list[list[str]]:
    args = {"ip": host["ipv4"], "name": host["name"], "port": port, "mode": mode, "commands": commands,
            "token": t, "ca": f"{status['state_dir']}/secrets/lab-ca/ca.crt"}
    return net_python(lab, DIALOG_SCRIPT, args)


def plain(user: str, pw: str) -> str:
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


# (description, port, mode, commands) — {t} is the attempt's token
ATTEMPTS = [
    ("25, no auth, stranger to a remote domain", 25, "plain",
     ["MAIL FROM:<{t}@outside.example>", "RCPT TO:<bob@production.test>", "DATA"]),
    ("25, spoofed local sender to a remote domain", 25, "plain",
     ["MAIL FROM:<alice@staging.test>", "RCPT TO:<bob@production.test>", "DATA"]),
    ("25 after STARTTLS, no auth", 25, "starttls",
     ["MAIL FROM:<{t}@outside.example>", "RCPT TO:<bob@production.test>", "DATA"]),
    ("25, AUTH attempted over plaintext", 25, "plain",
     ["AUTH PLAIN {auth}", "MAIL FROM:<alice@staging.test>", "RCPT TO:<bob@production.test>", "DATA"]),
    ("587, AUTH attempted before STARTTLS", 587, "plain",
     ["AUTH PLAIN {auth}", "MAIL FROM:<alice@staging.test>", "RCPT TO:<bob@production.test>", "DATA"]),
    ("587 after STARTTLS, no auth", 587, "starttls",
     ["MAIL FROM:<alice@staging.test>", "RCPT TO:<bob@production.test>", "DATA"]),
    ("465, no auth", 465, "smtps",
     ["MAIL FROM:<alice@staging.test>", "RCPT TO:<bob@production.test>", "DATA"]),
    ("25, bracketed IP literal recipient", 25, "plain",
     ["MAIL FROM:<{t}@outside.example>", "RCPT TO:<bob@[198.51.100.12]>", "DATA"]),
    ("25, percent hack", 25, "plain",
     ["MAIL FROM:<{t}@outside.example>", "RCPT TO:<bob%production.test@staging.test>", "DATA"]),
    ("25, bang path", 25, "plain",
     ["MAIL FROM:<{t}@outside.example>", "RCPT TO:<production.test!bob@staging.test>", "DATA"]),
    ("25, source route", 25, "plain",
     ["MAIL FROM:<{t}@outside.example>", "RCPT TO:<@staging.test:bob@production.test>", "DATA"]),
    ("25, quoted local part holding a remote address", 25, "plain",
     ["MAIL FROM:<{t}@outside.example>", 'RCPT TO:<"bob@production.test"@staging.test>', "DATA"]),
    ("25, null sender to a remote domain", 25, "plain",
     ["MAIL FROM:<>", "RCPT TO:<bob@production.test>", "DATA"]),
    ("25, remote domain with a trailing dot", 25, "plain",
     ["MAIL FROM:<{t}@outside.example>", "RCPT TO:<bob@production.test.>", "DATA"]),
]


@pytest.fixture(scope="module")
def relay_attempts(lab, deployed, mail_hosts, status):
    staging = env_host(mail_hosts, "staging")
    queue_before = queue(lab, staging["name"])
    auth = plain("alice@staging.test", password(status, "alice@staging.test"))
    results = []
    for desc, port, mode, commands in ATTEMPTS:
        t = token()
        cmds = [c.format(t=t, auth=auth) for c in commands]
        results.append((desc, t, dialog(lab, staging, status, port, mode, cmds, t)))
    time.sleep(2)  # give a (wrongly) accepted message time to be queued or delivered
    return staging, queue_before, results


def test_at_least_eight_distinct_relay_attempts_are_all_refused(relay_attempts):
    _, _, results = relay_attempts
    assert len(results) >= 8
    problems = []
    for desc, _, log in results:
        replies = {c: r for c, r in log}
        if replies.get("<message>", "").startswith("250") or any(
                c == "DATA" and r.startswith("354") for c, r in log):
            problems.append(f"{desc}: message accepted\n{log}")
        rcpt = next((r for c, r in log if c.startswith("RCPT")), "")
        if rcpt.startswith("250"):
            problems.append(f"{desc}: recipient accepted ({rcpt})")
        if any(c.startswith("AUTH") and r.startswith("235") for c, r in log):
            problems.append(f"{desc}: AUTH succeeded without TLS")
    assert not problems, "\n".join(problems)


def test_refusals_are_permanent_or_policy_errors(relay_attempts):
    """Each attempt ends in a 5xx (or 530 'STARTTLS/auth first') at MAIL or RCPT — never a silent 4xx retry."""
    _, _, results = relay_attempts
    for desc, _, log in results:
        refusal = next((r for c, r in log if c.startswith(("MAIL", "RCPT")) and not r.startswith("250")), None)
        assert refusal is not None and refusal.startswith("5"), f"{desc}: {log}"


def test_nothing_was_queued_or_delivered_for_the_attempts(lab, relay_attempts, mail_hosts):
    staging, queue_before, results = relay_attempts
    queue_after = queue(lab, staging["name"])
    new = set(queue_after.splitlines()) - set(queue_before.splitlines())
    assert not new, f"envelopes queued during the relay attempts:\n{new}"
    production = env_host(mail_hosts, "production")
    for desc, t, _ in results:
        assert not find_in_maildir(lab, production["name"], "bob@production.test", t, timeout=0.1), desc
