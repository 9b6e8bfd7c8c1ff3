"""Day-2 costs side by side on a deployed lab (MAILSTEAD_LAB_ID; run `make lab` first):

- a full no-op deploy of staging (`pyinfra ... --limit staging`) against `user add` (edit + the users-only
  deploy it runs) and `user remove`;
- a full `rollout` of a one-template change (imap_starttls = True: Dovecot's configuration) across staging and
  production, and the rollout that takes it back.

Edits tests/lab/group_data/{staging,all}.py and restores them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABCTL = str(ROOT / "tests" / "lab" / "labctl")
INV = "tests/lab/inventory.py"
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
PY = sys.executable
ALL = ROOT / "tests" / "lab" / "group_data" / "all.py"
STAGING = ROOT / "tests" / "lab" / "group_data" / "staging.py"


def timed(cmd: list[str], stdin: str | None = None) -> float:
    start = time.monotonic()
    proc = subprocess.run([LABCTL, "net", "--", *cmd], cwd=ROOT, capture_output=True, text=True, input=stdin)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return time.monotonic() - start


def main() -> int:
    status = json.loads(subprocess.run([LABCTL, "status", "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    cred = Path(status["state_dir"]) / "secrets" / "rollout" / "staging.json"
    if not cred.exists():
        sys.exit(f"{cred} missing: run tests/lab/test_rollout.py once (it writes the round trip's user)")
    acme = status["acme"]  # production's certificates come from the lab's pebble: trust its current root
    root = subprocess.run([LABCTL, "net", "--", "curl", "-sSf", "--cacert", acme["ca_bundle"],
                           f"{acme['management_url']}/roots/0"], capture_output=True, text=True, check=True).stdout
    ca = Path(status["state_dir"]) / "bench-pebble-root.pem"
    ca.write_text(root)
    all_text, staging_text = ALL.read_text(), STAGING.read_text()
    try:
        noop = timed([PYINFRA, "-y", INV, "deploy.py", "--limit", "staging"])
        add = timed([PY, "-m", "mailstead", "user", "add", "bench@staging.test", "--inventory", INV], "bench-Pass-1\n")
        remove = timed([PY, "-m", "mailstead", "user", "remove", "bench@staging.test", "--inventory", INV])
        ALL.write_text(all_text + "\nimap_starttls = True\n")
        change = timed([PY, "-m", "mailstead", "rollout", "--inventory", INV, "--ca-file", str(ca)])
        ALL.write_text(all_text)
        back = timed([PY, "-m", "mailstead", "rollout", "--inventory", INV, "--ca-file", str(ca)])
    finally:
        ALL.write_text(all_text)
        STAGING.write_text(staging_text)
    print(f"full no-op deploy of staging:            {noop:8.1f} s")
    print(f"user add (edit + users-only deploy):     {add:8.1f} s   ({add / noop:.2f} x the no-op deploy)")
    print(f"user remove (edit + users-only deploy):  {remove:8.1f} s   ({remove / noop:.2f} x)")
    print(f"rollout of a one-template change:        {change:8.1f} s   (staging + checks + round trip + production)")
    print(f"rollout taking it back:                  {back:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
