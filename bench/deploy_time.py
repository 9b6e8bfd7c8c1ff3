"""One mail host: its fresh deploy vs a no-op re-run of the same host, side by side in one run on a lab of its own.

Boots a separate lab (id "bench", or $MAILSTEAD_BENCH_LAB_ID) from scratch, deploys mail.staging.test alone
(`--limit`) onto the freshly booted host, re-runs that deploy with nothing to change a few times (the median
counts: the machine is shared), prints the times, the no-op/fresh ratio (the issue's target: at most 5 %) and
the machine's load, and takes the bench lab down. Every no-op run must report no changes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABCTL = str(ROOT / "tests" / "lab" / "labctl")
LAB_INVENTORY = "tests/lab/inventory.py"  # the lab's inventory, run from ROOT like `make lab-deploy`
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
HOST = "mail.staging.test"
NOOP_RUNS = 5


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[-5:])} failed:\n{proc.stderr[-4000:]}")
    return time.monotonic() - start, proc.stdout


def changed(stdout: str) -> list[str]:
    return [op["name"] for op in json.loads(stdout)["results"]["operations"] if op["success"]]


def main() -> int:
    env = dict(os.environ, MAILSTEAD_LAB_ID=os.environ.get("MAILSTEAD_BENCH_LAB_ID", "bench"))
    subprocess.run([LABCTL, "down"], env=env, check=False, stdout=subprocess.DEVNULL)
    load_start = os.getloadavg()
    try:
        boot, _ = timed([LABCTL, "up"], env)
        deploy = [LABCTL, "net", "--", PYINFRA, "-y", "--json", LAB_INVENTORY, "deploy.py", "--limit", HOST]
        fresh, _ = timed(deploy, env)
        noops = []
        for _ in range(NOOP_RUNS):
            seconds, out = timed(deploy, env)
            if ops := changed(out):
                sys.exit(f"a no-op deploy of {HOST} changed: {ops}")
            noops.append(seconds)
    finally:
        subprocess.run([LABCTL, "down"], env=env, check=False, stdout=subprocess.DEVNULL)
    noop = statistics.median(noops)
    load_end = os.getloadavg()
    print(f"lab boot (labctl up):                 {boot:8.1f} s")
    print(f"fresh deploy of {HOST}:     {fresh:8.1f} s")
    print(f"no-op deploy of {HOST}:     {noop:8.1f} s  (median of {NOOP_RUNS}: "
          f"{', '.join(f'{s:.1f}' for s in noops)})")
    print(f"no-op / fresh:                        {100 * noop / fresh:8.1f} %  (target: at most 5 %)")
    print(f"load average (1 min) at start / end:  {load_start[0]:8.2f} / {load_end[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
