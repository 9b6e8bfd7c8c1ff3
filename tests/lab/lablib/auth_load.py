"""SMTP AUTH latency under password guessing — a client program for the lab's outside world.

Run inside the lab network (``Lab.net("python3", __file__, json)``); standard library only, so it runs with
the machine's python3. It prints one JSON line.

Input (JSON, argv[1]):
  host, port (465: implicit TLS)        the mail host's submission listener
  user, password                        a real account: the legitimate client logs in with it
  guess_user                            the account the guessers attack (may be the same one)
  guessers                              concurrent guessing connections (0 = unloaded)
  guess_source                          the guessers' source address (another outside address)
  rounds                                legitimate AUTHs to time, one new connection each
  warmup                                seconds the guessers run before the first timed AUTH
  deadline                              hard bound on the whole run, seconds
  probe_25 (optional)                   {"rcpt": addr, "from": addr}: during the guessing, also time one
                                        delivery on port 25 from the default source address

Output: {"auth": [seconds per legitimate AUTH command], "ok": [bools], "guesses": total answered,
         "guess_replies": {code: count}, "errors": [...], "smtp25": seconds or null}
The timed span is the AUTH PLAIN command alone (TCP + TLS + EHLO happen before it), which is what a
guessing client can slow down.
"""

from __future__ import annotations

import base64
import json
import secrets
import smtplib
import ssl
import sys
import threading
import time


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a load probe of the server's AUTH path, not a TLS check
    return ctx


def plain(user: str, password: str) -> str:
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def connect(a: dict, source: str | None = None) -> smtplib.SMTP_SSL:
    s = smtplib.SMTP_SSL(a["host"], a["port"], context=tls_context(), timeout=60,
                         source_address=(source, 0) if source else None)
    s.ehlo("client.outside.example")
    return s


def guesser(a: dict, stop: threading.Event, counts: dict, lock: threading.Lock, errors: list) -> None:
    while not stop.is_set():
        try:
            s = connect(a, a["guess_source"])
        except (OSError, smtplib.SMTPException) as exc:
            with lock:
                errors.append(f"guesser connect: {exc!r}")
            stop.wait(0.2)
            continue
        try:
            while not stop.is_set():
                code, _ = s.docmd("AUTH", "PLAIN " + plain(a["guess_user"], "guess-" + secrets.token_hex(6)))
                with lock:
                    counts[str(code)] = counts.get(str(code), 0) + 1
                if code == 235:
                    with lock:
                        errors.append("a guess was accepted")
                    break
                if code == 421 or code >= 500 and code != 535:
                    break
        except (OSError, smtplib.SMTPException):
            pass  # the server hung up (too many failures): connect again, as a bot would
        finally:
            try:
                s.close()
            except OSError:
                pass


def timed_auth(a: dict) -> tuple[float, bool]:
    s = connect(a)
    try:
        t0 = time.monotonic()
        code, _ = s.docmd("AUTH", "PLAIN " + plain(a["user"], a["password"]))
        return time.monotonic() - t0, code == 235
    finally:
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            pass


def smtp25(a: dict) -> float:
    p = a["probe_25"]
    t0 = time.monotonic()
    with smtplib.SMTP(a["host"], 25, timeout=60, local_hostname="sender.outside.example") as s:
        s.sendmail(p["from"], [p["rcpt"]], f"From: {p['from']}\r\nTo: {p['rcpt']}\r\n"
                   f"Subject: {p.get('subject', 'during guessing')}\r\n\r\nhello\r\n")
    return time.monotonic() - t0


def main() -> None:
    a = json.loads(sys.argv[1])
    end = time.monotonic() + a.get("deadline", 300)
    stop = threading.Event()
    counts: dict[str, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=guesser, args=(a, stop, counts, lock, errors), daemon=True)
               for _ in range(a.get("guessers", 0))]
    for t in threads:
        t.start()
    times, oks, t25 = [], [], None
    try:
        if threads:
            stop.wait(a.get("warmup", 3))
        for i in range(a.get("rounds", 5)):
            if time.monotonic() > end:
                errors.append("deadline reached")
                break
            try:
                dt, ok = timed_auth(a)
            except (OSError, smtplib.SMTPException) as exc:
                errors.append(f"legitimate AUTH: {exc!r}")
                continue
            times.append(dt)
            oks.append(ok)
            if i == 0 and a.get("probe_25"):
                try:
                    t25 = smtp25(a)
                except (OSError, smtplib.SMTPException) as exc:
                    errors.append(f"port 25 delivery: {exc!r}")
    finally:
        stop.set()
        join_until = time.monotonic() + 70  # a guesser blocked in a read gives up after its 60 s timeout
        for t in threads:
            t.join(timeout=max(0.0, join_until - time.monotonic()))
    print(json.dumps({"auth": times, "ok": oks, "guesses": sum(counts.values()), "guess_replies": counts,
                      "errors": errors[:20], "smtp25": t25}))


if __name__ == "__main__":
    main()
