"""``python -m mailstead dns plan|apply|records --env ENV [--inventory FILE]``

plan     read the provider, print what apply would change (no write)
apply    plan, print, apply; exit status 0 when the zone is in sync afterwards
records  print every computed record in zone-file syntax (no provider access)
"""

from __future__ import annotations

import argparse
import sys

from mailstead.dns import desired_records, stage
from mailstead.dns.plan import ApplyError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead dns", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["plan", "apply", "records"])
    p.add_argument("--env", required=True, help="environment name (staging, production, ...)")
    p.add_argument("--inventory", default="inventory.py", metavar="FILE",
                   help="inventory file, loaded as pyinfra loads it (default: inventory.py)")
    args = p.parse_args(argv)

    from mailstead.inventory import load_environment_settings
    from mailstead.settings import SettingsError

    try:
        env = load_environment_settings(args.env, args.inventory)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.action == "records":
        for r in desired_records(env):
            for line in r.lines():
                print(line)
        return 0
    try:
        plan = stage(env, dry=(args.action == "plan"))
    except ApplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # credential problems and the like: one line, no traceback
        from mailstead.dns.providers import CredentialError

        if isinstance(exc, CredentialError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    if args.action == "plan":
        print(f"{len(plan)} change(s) planned" if not plan.empty else "no changes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
