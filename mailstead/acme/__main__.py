"""``python3 -m mailstead.acme run|due [--config PATH] [--force]`` on the mail host.

run: renew when due (``--force``: now), install, reload the daemons; exit 1 with one "FAILED: ..." line on
     stderr (the journal) when no certificate could be had — the current one keeps serving.
due: print "due: <reason>" or "ok" (the deploy reads it to decide whether to run); exit 0.
"""

from __future__ import annotations

import argparse
import sys

from mailstead.acme import client

DEFAULT_CONFIG = "/etc/mailstead/acme.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mailstead.acme")
    p.add_argument("command", choices=("run", "due"))
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--force", action="store_true", help="renew now, whatever the renewal decision says")
    a = p.parse_args(argv)
    if a.command == "run":
        return client.main_run(a.config, a.force)
    try:
        reason = client.due(client.load_config(a.config))
    except (OSError, ValueError) as e:
        reason = f"cannot tell ({e})"
    print(f"due: {reason}" if reason else "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
