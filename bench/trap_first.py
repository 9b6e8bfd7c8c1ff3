"""What trap-first costs a real sender: Postfix delivery time through MX 10 (trap-first) → MX 20 (real MX).

Side by side in one run, from the lab's Postfix (on infra, installed by the spamtrap test or here) to
alice@production.test: trap-first as deployed (port 25 refused with a TCP reset), and trap-first silently
dropping port 25 (a rule inserted for the run, then the deployed ruleset reloaded) — why a trap must never
drop. Per row: submission → in the INBOX (median of ROUNDS messages), and Postfix's own delay= figure.

Usage: python bench/trap_first.py [ROUNDS]   (default 3 with the reset; the drop row sends 1: it takes ~1 min)
Needs a deployed lab (`make lab`); uses $MAILSTEAD_LAB_ID like the tests. Runs inside the lab network.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent.parent / "tests" / "lab"
sys.path.insert(0, str(LAB_DIR))

from helpers import find_in_maildir, token  # noqa: E402
from lablib import Lab  # noqa: E402

USER = "alice@production.test"


def postfix(lab: Lab) -> None:
    if lab.exec("infra", "sh", "-c", "command -v postconf", check=False).returncode != 0:
        lab.exec("infra", "sh", "-c", "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
                 "apt-get install -y -q --no-install-recommends postfix >/dev/null", timeout=300)
    lab.exec("infra", "postconf", "-e", "inet_interfaces=loopback-only", "mydestination=", "relayhost=")
    lab.exec("infra", "systemctl", "restart", "postfix")


def send(lab: Lab, prod: str) -> tuple[float, float]:
    tok = token()
    t0 = time.monotonic()
    lab.exec("infra", "sendmail", "-f", "peer@lab.test", USER,
             input=f"From: peer@lab.test\nTo: {USER}\nSubject: {tok}\n\nbench\n")
    if not find_in_maildir(lab, prod, USER, tok, timeout=180):
        raise RuntimeError("the message did not arrive")
    seconds = time.monotonic() - t0
    log = lab.exec("infra", "journalctl", "SYSLOG_IDENTIFIER=postfix/smtp", "-n", "5", "-o", "cat").stdout
    delays = re.findall(r"to=<alice@production\.test>.*? delay=([0-9.]+),.*status=sent", log)
    return seconds, float(delays[-1]) if delays else float("nan")


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    lab = Lab()
    prod = next(h["name"] for h in lab.status()["hosts"]
                if "mailservers" in h["roles"] and h["environment"] == "production")
    postfix(lab)
    rows = {"reset (deployed)": [send(lab, prod) for _ in range(rounds)]}
    lab.exec("trap1", "nft", "insert", "rule", "inet", "mailstead", "input", "tcp", "dport", "25", "drop")
    try:
        rows["drop"] = [send(lab, prod)]
    finally:
        lab.exec("trap1", "systemctl", "reload", "mailstead-firewall")
    base = statistics.median(s for s, _ in rows["reset (deployed)"])
    print(f"{'trap-first':<18} {'to INBOX (median)':>18} {'Postfix delay=':>15} {'ratio':>7}")
    for name, samples in rows.items():
        med = statistics.median(s for s, _ in samples)
        print(f"{name:<18} {med:>16.2f} s {statistics.median(d for _, d in samples):>13.2f} s {med / base:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
