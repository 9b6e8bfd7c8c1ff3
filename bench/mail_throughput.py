"""Inbound mail throughput: 20 KiB messages from the lab's outside world over SMTP (port 25) to Dovecot's
LMTP delivery in a user's maildir, bounded count, on the deployed staging mail host.

Prints the SMTP acceptance rate, the end-to-end rate (last message in the maildir) and their ratio.
Usage: python bench/mail_throughput.py [COUNT] [CONNECTIONS]   (defaults 300 messages, 4 connections)
Needs a deployed lab (`make lab`); uses $MAILSTEAD_LAB_ID like the tests.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lab"))

from lablib import Lab  # noqa: E402

SENDER = r"""
import json, smtplib, sys, threading, time
from email.message import EmailMessage
args = json.loads(sys.argv[1])
body = ("x" * 76 + "\n") * (20 * 1024 // 77)          # ~20 KiB of body
per_conn = [args["count"] // args["conns"] + (1 if i < args["count"] % args["conns"] else 0)
            for i in range(args["conns"])]
errors = []
PER_SESSION = 50  # smtpd allows 100 messages per session by default; reconnect well before that
def worker(n, idx):
    try:
        sent = 0
        while sent < n:
            with smtplib.SMTP(args["ip"], 25, local_hostname="bench.outside.example", timeout=60) as s:
                for _ in range(min(PER_SESSION, n - sent)):
                    m = EmailMessage()
                    m["From"] = "bench@outside.example"
                    m["To"] = args["rcpt"]
                    m["Subject"] = f"{args['token']} {idx}-{sent}"
                    m.set_content(body)
                    s.send_message(m)
                    sent += 1
    except Exception as e:
        errors.append(repr(e))
start = time.time()
threads = [threading.Thread(target=worker, args=(n, i)) for i, n in enumerate(per_conn)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"start": start, "accepted_at": time.time(), "errors": errors}))
"""


def measure(lab, host: dict, rcpt: str, count: int, conns: int) -> dict | None:
    """Send ``count`` 20 KiB messages over ``conns`` connections to ``host``:25 for ``rcpt`` and wait until all
    are in the maildir; {"accept_s", "total_s", "token"} (None on SMTP errors or a timeout). The messages are
    removed again."""
    local, domain = rcpt.split("@")
    maildir = f"/var/vmail/{domain}/{local}/Maildir"
    token = "bench" + uuid.uuid4().hex[:12]
    count_cmd = f"grep -rlF -- '{token}' {maildir}/new {maildir}/cur 2>/dev/null | wc -l"
    proc = lab.net("python3", "-c", SENDER, json.dumps({"ip": host["ipv4"], "rcpt": rcpt, "count": count,
                                                         "conns": conns, "token": token}), timeout=1800)
    sent = json.loads(proc.stdout.strip().splitlines()[-1])
    cleanup = (f"grep -rlF -- '{token}' {maildir}/new {maildir}/cur | xargs -r rm -f; "
               f"doveadm force-resync -u {rcpt} INBOX")
    if sent["errors"]:
        print("SMTP errors:", sent["errors"][:3])
        time.sleep(5)
        lab.exec(host["name"], "sh", "-c", cleanup, check=False)
        return None
    # wait for the last delivery; the host and this machine share one clock (containers)
    deadline = time.time() + 600
    delivered = 0
    while time.time() < deadline:
        delivered = int(lab.exec(host["name"], "sh", "-c", count_cmd).stdout.strip() or 0)
        if delivered >= count:
            break
        time.sleep(0.2)
    done = time.time()
    lab.exec(host["name"], "sh", "-c", cleanup, check=False)  # keep the user's mailbox small
    if delivered < count:
        print(f"only {delivered}/{count} messages delivered within 10 min")
        return None
    return {"accept_s": sent["accepted_at"] - sent["start"], "total_s": done - sent["start"], "token": token}


def staging_target(st: dict) -> tuple[dict, str]:
    """The staging mail host of the lab's status and the address mail goes to (bob@staging.test)."""
    host = next(h for h in st["hosts"] if "mailservers" in h["roles"] and h["environment"] == "staging")
    rcpt = next(u["address"] for d in st["domains"] if d["domain"] == "staging.test" for u in d["users"]
                if u["address"].startswith("bob@"))
    return host, rcpt


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    lab = Lab()
    host, rcpt = staging_target(lab.status())
    r = measure(lab, host, rcpt, count, conns)
    if r is None:
        return 1
    accept_s, total_s = r["accept_s"], r["total_s"]
    print(f"messages: {count} x 20 KiB over {conns} SMTP connections to {host['name']}:25 → LMTP → maildir")
    print(f"SMTP accepted:           {accept_s:7.2f} s  {count / accept_s:7.1f} msg/s")
    print(f"delivered to maildir:    {total_s:7.2f} s  {count / total_s:7.1f} msg/s"
          f"  ({count * 20 / 1024 / total_s:5.2f} MiB/s)")
    print(f"ratio delivered / accepted rate: {accept_s / total_s:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
