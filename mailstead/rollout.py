"""``python -m mailstead rollout [--inventory FILE] [--dry] [--staging ENV] [--production ENV]``

Deploy staging, check it (everything `check` looks at, plus a real round trip: submit on 587 as a staging
user to that user and read it back over IMAP), and only when both are green deploy production and check it.
A failure stops before production with exit status 1 and names the failed step or check; production's hosts
are not contacted. --dry shows, per host, what a deploy of each environment would change and changes nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from mailstead.check import PROBLEM, Context, Finding, render
from mailstead.check.cli import check_environment, targets_of, trusted_cas
from mailstead.check.roundtrip import round_trip

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def deploy(inventory_file: str, environment: str, dry: bool = False) -> int:
    """`pyinfra -y INVENTORY deploy.py --limit ENV` (with --dry --diff: what would change), its output shown."""
    argv = [PYINFRA, "-y", inventory_file, "deploy.py", "--limit", environment]
    if dry:
        argv += ["--dry", "--diff"]
    say(f"rollout: {'planning' if dry else 'deploying'} {environment}: {' '.join(argv[1:])}")
    return subprocess.run(argv).returncode


def gate(inventory, environment: str, round_trip_too: bool, ca_files: list[str]) -> list[Finding]:
    """The findings of `check` for one environment, plus the round trip on each of its mail hosts."""
    findings = check_environment(inventory, environment, ca_files=ca_files)
    if round_trip_too:
        from mailstead.inventory import environments

        targets = targets_of(inventory, environment)
        env = environments(inventory)[environment]
        ctx = Context(env=env, targets=targets, ca_files=trusted_cas(env, ca_files))
        for t in ctx.mail_targets:
            findings += list(round_trip(ctx, t))
    return findings


def say(text: str) -> None:
    print(text, flush=True)


def failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status == PROBLEM]


def failed_names(findings: list[Finding]) -> str:
    """The failed checks as "check subject, ...", for the line that says why the rollout stopped."""
    return ", ".join(f"{f.check} {f.subject}" for f in failed(findings))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead rollout", description=__doc__.split("\n\n")[1])
    p.add_argument("--inventory", default="inventory.py", metavar="FILE")
    p.add_argument("--dry", action="store_true", help="show what each environment's deploy would change; change nothing")
    p.add_argument("--staging", default="staging", metavar="ENV", help="the environment tried first (default staging)")
    p.add_argument("--production", default="production", metavar="ENV", help="the environment after it")
    p.add_argument("--ca-file", action="append", default=[], metavar="FILE",
                   help="also trust this CA in the checks' TLS probes (repeatable)")
    args = p.parse_args(argv)

    from mailstead.inventory import load_inventory
    from mailstead.settings import SettingsError, from_host

    try:
        inventory = load_inventory(args.inventory)
        known = {from_host(h).environment for h in inventory}
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for e in (args.staging, args.production):
        if e not in known:
            print(f"{args.inventory}: no host has environment {e!r}", file=sys.stderr)
            return 2
    if args.dry:
        rc = deploy(args.inventory, args.staging, dry=True) or deploy(args.inventory, args.production, dry=True)
        return 1 if rc else 0

    start = time.monotonic()
    if deploy(args.inventory, args.staging) != 0:
        say(f"rollout: STOPPED: the deploy of {args.staging} failed; {args.production} was not touched")
        return 1
    findings = gate(inventory, args.staging, round_trip_too=True, ca_files=args.ca_file)
    say(render(findings))
    if failed(findings):
        say(f"rollout: STOPPED: {args.staging} failed its checks ({failed_names(findings)}); "
            f"{args.production} was not touched")
        return 1
    say(f"rollout: {args.staging} is green; deploying {args.production}")
    if deploy(args.inventory, args.production) != 0:
        say(f"rollout: the deploy of {args.production} failed")
        return 1
    findings = check_environment(inventory, args.production, ca_files=args.ca_file)
    say(render(findings))
    if failed(findings):
        say(f"rollout: {args.production} was deployed but fails its checks: {failed_names(findings)}")
        return 1
    say(f"rollout: done in {time.monotonic() - start:.0f} s: {args.staging} and {args.production} are green")
    return 0


if __name__ == "__main__":
    sys.exit(main())
