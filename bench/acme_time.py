"""ACME in the lab, side by side in one run: a fresh mail host to a trusted certificate on every listener,
then the renewal run's duration (forced renewal vs a run that finds nothing due).

Uses the lab MAILSTEAD_LAB_ID (default "bench": booted for this run and taken down after; an id whose lab is
already up is reused and left up). mail.production.test (tls.mode 'acme', pebble on infra) is rebuilt from the
base image, then deployed with `--limit production`; the clock runs from the start of that deploy until a
client in the outside world that trusts only pebble's root verifies 25, 465, 587, 993, 4190 and 443.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "lab"))

from helpers import LAB_INVENTORY, PYINFRA, pebble_root, probe_tls, tls_listeners  # noqa: E402
from lablib import Lab  # noqa: E402

HOST, NAME = "mail-prod", "mail.production.test"
RUN = ["sh", "-c", "PYTHONPATH=/usr/local/lib/mailstead python3 -m mailstead.acme run {}"]


def main() -> int:
    lab_id = os.environ.setdefault("MAILSTEAD_LAB_ID", "bench")
    lab = Lab(lab_id)
    ours = not lab.is_up()
    try:
        lab.up()
        status = lab.status()
        ip = next(h["ipv4"] for h in status["hosts"] if h["short"] == HOST)
        listeners = tls_listeners(NAME, "production.test")
        old = lab.exec(HOST, "cat", "/var/lib/mailstead/acme/state.json", check=False)  # deployed before?
        before = json.loads(old.stdout) if old.returncode == 0 else {}
        rebuild = lab.rebuild(HOST)
        with tempfile.TemporaryDirectory() as tmp:
            root = pebble_root(lab, status, Path(tmp) / "root.pem")
            t0 = time.monotonic()
            p = subprocess.run(lab.net_argv([PYINFRA, "-y", LAB_INVENTORY, "deploy.py", "--limit", "production"]),
                               cwd=ROOT, capture_output=True, text=True)
            deployed = time.monotonic() - t0
            if p.returncode != 0:
                sys.exit(f"deploy failed:\n{p.stderr[-4000:]}")
            while not all(r["ok"] for r in probe_tls(lab, ip, root, listeners)):
                if time.monotonic() - t0 > deployed + 60:
                    sys.exit("no trusted certificate on every listener 60 s after the deploy")
                time.sleep(0.5)
            trusted = time.monotonic() - t0
        after = json.loads(lab.exec(HOST, "cat", "/var/lib/mailstead/acme/state.json").stdout)
        if after["account"] != before.get("account", after["account"]):
            sys.exit(f"the rebuilt host registered a new ACME account: {before.get('account')} -> {after['account']}")
        forced, noop = [], []
        for _ in range(3):
            for runs, arg in ((forced, "--force"), (noop, "")):
                t = time.monotonic()
                lab.exec(HOST, *RUN[:2], RUN[2].format(arg), timeout=300)
                runs.append(time.monotonic() - t)
    finally:
        if ours:
            lab.down()
    print(f"rebuild {HOST} (fresh Debian 13):            {rebuild:8.1f} s")
    print(f"fresh host -> trusted cert on every listener: {trusted:8.1f} s  (deploy --limit production: "
          f"{deployed:.1f} s)")
    print(f"ACME account after the rebuild:               {'the same' if 'account' in before else 'n/a'} "
          f"({after['account']})")
    print(f"renewal run, forced (order, HTTP-01, reloads): {statistics.median(forced):8.2f} s  (median of 3)")
    print(f"renewal run, nothing due (ARI check only):     {statistics.median(noop):8.2f} s  (median of 3)")
    print(f"ratio forced / nothing due:                    {statistics.median(forced) / statistics.median(noop):8.1f} x")
    print(json.dumps({"trusted_s": trusted, "deploy_s": deployed, "forced_s": forced, "noop_s": noop}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
