"""SMTP AUTH latency of a legitimate user while other clients guess passwords.

Side by side in one run: the AUTH PLAIN command's latency on port 465 of the deployed staging mail host
with 0, 8 and 32 concurrent guessing connections from another outside address (the guessers attack the
same account), median and p95 over ROUNDS logins each, and the ratio to the unloaded figures. OpenSMTPD is
restarted after each row, so each row starts without the previous row's guessers on record.

Usage: python bench/auth_latency.py [ROUNDS [DEADLINE]]   (defaults 15 logins per row, at most 600 s per row)
Needs a deployed lab (`make lab`); uses $MAILSTEAD_LAB_ID like the tests. Runs inside the lab network.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent.parent / "tests" / "lab"
sys.path.insert(0, str(LAB_DIR))

from lablib import Lab, topology  # noqa: E402

PROBE = LAB_DIR / "lablib" / "auth_load.py"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    deadline = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    lab = Lab()
    st = lab.status()
    host = next(h for h in st["hosts"] if "mailservers" in h["roles"] and h["environment"] == "staging")
    account = next(u for d in st["domains"] if d["domain"] == "staging.test" for u in d["users"]
                   if u["address"].startswith("alice@"))
    rows = []
    for guessers in (0, 8, 32):
        args = {"host": host["ipv4"], "port": 465, "user": account["address"], "password": account["password"],
                "guess_user": account["address"], "guessers": guessers, "guess_source": topology.OUTSIDE_ALT_V4,
                "rounds": rounds, "warmup": 3, "deadline": deadline}
        proc = lab.net("python3", PROBE, json.dumps(args), timeout=900, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-2000:])
            return 1
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if not all(out["ok"]):
            print(f"{guessers} guessers: a legitimate AUTH was refused: {out}")
            return 1
        rows.append((guessers, statistics.median(out["auth"]) if out["auth"] else None,
                     p95(out["auth"]) if out["auth"] else None, out["guesses"], out["guess_replies"],
                     out["errors"], len(out["auth"])))
        # a fresh start for the next row: the guessers' record in filter-authguard goes with the restart
        lab.exec(host["name"], "systemctl", "restart", "opensmtpd")
        time.sleep(2)
    base_med, base_p95 = rows[0][1], rows[0][2]
    if base_med is None:
        print("no unloaded login finished")
        return 1
    print(f"SMTP AUTH PLAIN on {host['name']}:465, {rounds} logins per row; guessers from "
          f"{topology.OUTSIDE_ALT_V4} attack the same account")
    print(f"{'guessers':>8}  {'logins':>6}  {'median s':>9}  {'p95 s':>7}  {'x median':>8}  {'x p95':>6}  "
          f"{'guesses answered':>16}")
    for guessers, med, high, guesses, replies, errors, n in rows:
        if med is None:
            print(f"{guessers:>8}  {n:>6}  no login finished within {deadline} s  {guesses:>16}  "
                  f"{json.dumps(replies)}  errors: {'; '.join(errors[:2])}")
            continue
        print(f"{guessers:>8}  {n:>6}  {med:9.3f}  {high:7.3f}  {med / base_med:8.2f}  {high / base_p95:6.2f}  "
              f"{guesses:>16}  {json.dumps(replies)}{'  errors: ' + '; '.join(errors[:2]) if errors else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
