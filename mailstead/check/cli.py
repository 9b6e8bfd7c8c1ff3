"""``python -m mailstead check [--inventory FILE] [--env ENV] [--json] [--no-ssh] [--ca-file FILE]``

Checks every host and domain of an environment as the outside world sees it (DNS through this machine's
resolver, TLS, MTA-STS, relay, traps, blocklists) and, over SSH, what only the host knows (failed units, queue,
disk). One line per finding: ok, warning or problem, with what to do. Exit status 0 = no problem (warnings
allowed), 1 = at least one problem, 2 = the settings or inventory could not be read.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailstead import secrets
from mailstead.check.findings import PROBLEM, Context, Finding, Target, render
from mailstead.check.run import run_checks
from mailstead.check.hostcheck import ssh_argv


def targets_of(inventory: Any, environment: str) -> list[Target]:
    """The hosts of one environment of a pyinfra inventory, with their settings and SSH argv."""
    from mailstead.settings import from_host

    out = []
    for h in inventory:
        s = from_host(h)
        if s.environment == environment:
            out.append(Target(settings=s, ssh=tuple(ssh_argv(h.data.dict(), str(s.fqdn)))))
    return out


def trusted_cas(env: Any, extra: list[str]) -> list[str]:
    """The CA files TLS is checked against besides the system's: the private CA when tls.mode is 'lab' (what
    the README tells mail clients to trust) and any --ca-file."""
    out = list(extra)
    for h in env.hosts:
        if h.tls.mode == "lab":
            ca = secrets.ca_cert_file(secrets.lab_ca_dir(env.secrets_dir, h.tls.lab_ca_dir))
            if str(ca) not in out:
                out.append(str(ca))
    return out


def check_environment(inventory: Any, environment: str, ssh: bool = True, ca_files: list[str] | None = None,
                      timeout: float = 10.0) -> list[Finding]:
    """Every finding of one environment (the rollout uses this too)."""
    from mailstead.inventory import environments

    targets = targets_of(inventory, environment)
    env = environments(inventory)[environment]
    ctx = Context(env=env, targets=targets, ca_files=trusted_cas(env, ca_files or []), ssh=ssh, timeout=timeout)
    return run_checks(ctx)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead check", description=__doc__.split("\n\n")[1])
    p.add_argument("--inventory", default="inventory.py", metavar="FILE",
                   help="inventory file, loaded as pyinfra loads it (default: inventory.py)")
    p.add_argument("--env", action="append", metavar="ENV",
                   help="environment to check (repeatable; default: every environment of the inventory)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--no-ssh", action="store_true", help="only what the outside world sees (no SSH login)")
    p.add_argument("--ca-file", action="append", default=[], metavar="FILE",
                   help="also trust this CA for the TLS checks (repeatable)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per network probe (default 10)")
    args = p.parse_args(argv)

    from mailstead.inventory import load_inventory
    from mailstead.settings import SettingsError, from_host

    try:
        inventory = load_inventory(args.inventory)
        known = sorted({from_host(h).environment for h in inventory})
        envs = args.env or known
        unknown = [e for e in envs if e not in known]
        if unknown:
            print(f"{args.inventory}: no host has environment {unknown[0]!r}; known environments: "
                  f"{', '.join(known)}", file=sys.stderr)
            return 2
        findings: list[Finding] = []
        for e in envs:
            findings += check_environment(inventory, e, ssh=not args.no_ssh, ca_files=args.ca_file,
                                          timeout=args.timeout)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(render(findings, as_json=args.json))
    return 1 if any(f.status == PROBLEM for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
