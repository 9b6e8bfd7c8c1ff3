"""Fresh lab deploy vs no-op re-run, measured side by side in one run on a lab of its own.

Boots a separate lab (id "bench") from scratch, deploys mailstead onto the fresh hosts, deploys again
with nothing to change, prints both times and their ratio, and takes the bench lab down.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABCTL = str(ROOT / "tests" / "lab" / "labctl")
LAB_INVENTORY = "tests/lab/inventory.py"  # the lab's inventory, run from ROOT like `make lab-deploy`
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def timed(cmd: list[str], env: dict) -> float:
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[-3:])} failed:\n{proc.stderr[-4000:]}")
    return time.monotonic() - start


def main() -> int:
    env = dict(os.environ, MAILSTEAD_LAB_ID="bench")
    subprocess.run([LABCTL, "down"], env=env, check=False, stdout=subprocess.DEVNULL)
    try:
        boot = timed([LABCTL, "up"], env)
        deploy = [LABCTL, "net", "--", PYINFRA, "-y", LAB_INVENTORY, "deploy.py"]
        fresh = timed(deploy, env)
        noop = timed(deploy, env)
    finally:
        subprocess.run([LABCTL, "down"], env=env, check=False, stdout=subprocess.DEVNULL)
    print(f"lab boot (labctl up):          {boot:8.1f} s")
    print(f"fresh lab deploy:              {fresh:8.1f} s")
    print(f"no-op re-run:                  {noop:8.1f} s")
    print(f"ratio fresh / no-op:           {fresh / noop:8.1f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
