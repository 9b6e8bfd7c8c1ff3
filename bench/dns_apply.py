#!/usr/bin/env python3
"""Benchmark: DNS apply of a fresh domain vs. a no-op apply, against the lab's PowerDNS (and RFC 2136).

Needs the lab (``tests/lab/labctl up``; MAILSTEAD_LAB_ID selects which) and root. Re-executes itself inside
the lab's network namespace, creates a fresh zone ``bench.test`` (and uses the dynamic zone for RFC 2136),
and prints calls and seconds side by side:

    provider   run         changes  reads  writes  seconds
    powerdns   fresh            23      1       1    0.08
    powerdns   no-op             0      1       0    0.02
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSIDE = "MAILSTEAD_BENCH_IN_LAB"
LAB_INVENTORY = "tests/lab/inventory.py"  # the lab's inventory (relative to ROOT, where this runs)


def outside() -> int:
    sys.path.insert(0, str(ROOT / "tests" / "lab"))
    from lablib import Lab

    lab = Lab()
    if not lab.status()["up"]:
        print(f"lab {lab.lab_id} is not up: run tests/lab/labctl up", file=sys.stderr)
        return 3
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{INSIDE: lab.status()["tsig_file"]})
    return subprocess.run(lab.net_argv([sys.executable, __file__, *sys.argv[1:]]), cwd=ROOT, env=env).returncode


def inside(rounds: int = 3) -> int:
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.simplefilter("ignore")
    from mailstead.dns import stage
    from mailstead.dns.providers import from_settings, read_secret
    from mailstead.dns.providers.powerdns import PowerDNS
    from mailstead.dns.providers.rfc2136 import RFC2136
    from mailstead.inventory import load_environment_settings
    from mailstead.settings import DnsProvider

    base = load_environment_settings("production", LAB_INVENTORY)
    key = read_secret(base.dns, base.secrets_dir)
    admin = PowerDNS(base.dns.api_url, key)
    tsig = json.loads(Path(os.environ[INSIDE]).read_text())
    rows = []
    prev: set = set()

    def run(label, run_name, env, make_provider):
        p = make_provider()
        t = time.perf_counter()
        plan = stage(env, dry=False, provider=p, out=io.StringIO())
        rows.append((label, run_name, len(plan.changes), p.calls["read"], p.calls["write"], time.perf_counter() - t))

    for i in range(rounds):
        with tempfile.TemporaryDirectory() as secrets:
            # PowerDNS: a fresh zone each round
            admin.delete_zone("bench.test")
            admin.create_zone("bench.test", nameservers=["infra.lab.test."])
            env = base.model_copy(update={"domains": ["bench.test"], "secrets_dir": secrets})
            # key generation (RSA 2048 + Ed25519) happens once per new domain; keep it out of the apply timing
            from mailstead import dkim

            dkim.ensure_keys(secrets, "bench.test")
            run("powerdns", "fresh", env, lambda: from_settings(env.dns, secrets) or None)
            run("powerdns", "no-op", env, lambda: from_settings(env.dns, secrets))

            # RFC 2136: the lab's dynamic zone
            dyn = DnsProvider(provider="rfc2136", server="198.51.100.10", tsig_key_name=tsig["name"],
                              tsig_algorithm=tsig["algorithm"], secret_file=os.environ[INSIDE])
            env2 = base.model_copy(update={"domains": ["rfc2136.test"], "secrets_dir": secrets, "dns": dyn})
            dkim.ensure_keys(secrets, "rfc2136.test")
            mk = lambda: RFC2136(dyn.server, dyn.tsig_key_name, tsig["secret"], dyn.tsig_algorithm)  # noqa: E731
            # make the zone fresh: remove every RRset mailstead would publish (and the last round's DKIM names)
            from mailstead.dns import desired_records
            from mailstead.dns.plan import Change

            keys = {r.key for r in desired_records(env2) if r.name.endswith("rfc2136.test")} | prev
            mk().apply("rfc2136.test", [Change("delete", n, t, 0) for n, t in sorted(keys)])
            prev.clear()
            prev.update(k for k in keys if "._domainkey." in k[0])
            run("rfc2136", "fresh", env2, mk)
            run("rfc2136", "no-op", env2, mk)
    admin.delete_zone("bench.test")

    print(f"{'provider':<10} {'run':<8} {'changes':>7} {'reads':>6} {'writes':>6} {'seconds':>8}")
    for label, name, ch, r, w, s in rows:
        print(f"{label:<10} {name:<8} {ch:>7} {r:>6} {w:>6} {s:>8.3f}")
    by = {}
    for label, name, ch, r, w, s in rows:
        by.setdefault((label, name), []).append(s)
    print()
    for label in ("powerdns", "rfc2136"):
        runs = [k for k in by if k[0] == label]
        if len(runs) == 2:
            a, b = (min(by[k]) for k in runs)
            print(f"{label}: best {runs[0][1]} {a:.3f} s vs best {runs[1][1]} {b:.3f} s (ratio {a / b:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(inside() if os.environ.get(INSIDE) else outside())
