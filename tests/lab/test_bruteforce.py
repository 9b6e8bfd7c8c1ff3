"""Password guessing gets its address blocked: fail2ban (lab: 5 failures, 20 s ban) bans a guesser on
SMTP submission and on IMAP while a real user at another address logs in, and the ban ends by itself.

The guessers use outside pool addresses of their own (topology.OUTSIDE_POOL_V4); the gateway, where the rest
of the suite connects from, is in the lab's bruteforce.ignore.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from lablib import topology

from helpers import env_host, net_python, password

GUESS = r"""
import imaplib, smtplib, socket, ssl, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
H = ARGS["host"]

def login(proto, src, pw):
    try:
        if proto == "smtp":
            s = smtplib.SMTP(H, 587, timeout=60, source_address=(src, 0)); s.starttls(context=ctx)
            try:
                s.ehlo(); s.user, s.password = ARGS["user"], pw  # one AUTH PLAIN = one failure (login()
                s.auth("PLAIN", s.auth_plain); return "ok"      # would try every mechanism offered)
            finally:
                s.close()
        m = imaplib.IMAP4_SSL(H, 993, ssl_context=ctx, timeout=60)
        try:
            m.login(ARGS["user"], pw); m.logout(); return "ok"
        except imaplib.IMAP4.error:
            return "fail"
    except smtplib.SMTPAuthenticationError:
        return "fail"
    except smtplib.SMTPResponseException as e:
        return str(e.smtp_code)
    except ConnectionRefusedError:
        return "refused"

def connect(src, port):
    s = socket.socket(); s.settimeout(3); s.bind((src, 0))
    try:
        s.connect((H, port)); return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()

proto, port = ARGS["proto"], ARGS["port"]
guesser, user = ARGS["guesser"], ARGS["other"]
if proto == "imap":  # imaplib cannot bind a source address: do it for the whole process
    _orig = socket.create_connection
    socket.create_connection = lambda addr, timeout=None, source_address=None: _orig(addr, timeout, (guesser, 0))
t0 = time.monotonic()
guesses, banned = [], None
for i in range(ARGS["guesses"]):
    guesses.append(login(proto, guesser, f"wrong-{i}"))
    if guesses[-1] == "refused":
        banned = time.monotonic(); break
    # fail2ban follows the journal within a second; one probe a second stays below the firewall's rate limit
    deadline = time.monotonic() + (8 if i >= 4 else 1)
    while not banned and time.monotonic() < deadline:
        time.sleep(1)
        if connect(guesser, port) == "refused":
            banned = time.monotonic()
    if banned:
        break
guessed = time.monotonic()
other_ports = {p: connect(guesser, p) for p in ARGS["also_banned"]}
if proto == "imap":
    socket.create_connection = lambda addr, timeout=None, source_address=None: _orig(addr, timeout, (user, 0))
else:
    pass
real = login(proto, user, ARGS["password"])
lifted = None
while banned and time.monotonic() - banned < 90:
    if connect(guesser, port) == "open":
        lifted = time.monotonic(); break
    time.sleep(1)
print(json.dumps({"guesses": guesses, "guess_seconds": guessed - t0,
                  "banned": banned is not None, "other_ports": other_ports,
                  "real_user": real, "ban_lasted": None if lifted is None else lifted - banned}))
"""


def run_guesser(lab, host: dict, status, proto: str, port: int, also: list[int], guesser: str, other: str) -> dict:
    out = net_python(lab, GUESS, {"host": host["ipv4"], "user": "bob@production.test", "proto": proto,
                                  "port": port, "also_banned": also, "guesser": guesser, "other": other,
                                  "password": password(status, "bob@production.test"), "guesses": 8},
                     timeout=400)
    print(f"{proto}: {out}")
    return out


def test_guesses_on_smtp_and_imap_ban_their_addresses_while_another_logs_in_and_the_ban_ends(
        lab, deployed, mail_hosts, status):
    prod = env_host(mail_hosts, "production")
    pool = topology.OUTSIDE_POOL_V4
    # filter-authguard remembers failures for 15 minutes (a rerun would meet its 421 instead of smtpd's 535):
    # start from a clean slate, so the failures counted are this test's
    lab.exec(prod["name"], "systemctl", "restart", "opensmtpd")
    # both guessers at once (SMTP AUTH waits in filter-authguard, IMAP in Dovecot's penalty: each ~1 min)
    with ThreadPoolExecutor(2) as pool_exec:
        smtp = pool_exec.submit(run_guesser, lab, prod, status, "smtp", 587, [465], pool[9], pool[4])
        imap = pool_exec.submit(run_guesser, lab, prod, status, "imap", 993, [4190], pool[3], pool[2])
        smtp, imap = smtp.result(), imap.result()
    for out, other in ((smtp, "465"), (imap, "4190")):
        assert out["guesses"] == ["fail"] * 5 and out["banned"], out  # banned right after the 5th failure
        assert out["other_ports"] == {other: "refused"}, out  # the jail's other ports too
        assert out["real_user"] == "ok", out  # another address logs in meanwhile
        assert out["ban_lasted"] is not None and 10 <= out["ban_lasted"] <= 60, out  # lab bantime 20 s
