"""`python -m mailstead check`: the environment as the outside world sees it, one line per finding.

Every check is a small function that returns ``Finding``s (ok / warning / problem, what was seen, what to do);
``run_checks`` (run.py) calls them for every host and domain of an environment. A new check (rspamd, ACME,
firewall, traps) is one more function there, called for the domains, hosts or mail hosts it concerns.

Modules:
  findings   Finding, Context (what every check gets: the environment, its hosts, the resolver, TLS trust)
  dnscheck   live DNS vs the computed records, PTR, DNS blocklists, TLSA, MTA-STS policy
  netcheck   TLS on each port, open relay probe, what the spamtraps do
  hostcheck  over SSH: failed systemd units, mail queue, disk use of the mail store
  releases   a newer OpenSMTPD release than the one the host runs, a Debian security fix of it (debiansec)
  backupcheck  over SSH: the newest restic snapshot and the last backup run vs the timer's interval
  run        run_checks: every check for every domain and host
  cli        the command line
"""

from __future__ import annotations

# mailstead.settings first: it imports pyinfra_cli, whose import monkey-patches ssl (gevent); ssl imported
# before that patch makes TLS contexts fail with RecursionError (see mailstead/dns/__init__.py)
import mailstead.settings  # noqa: F401,I001
from mailstead.check.findings import OK, PROBLEM, WARNING, Context, Finding, Target, render
from mailstead.check.run import run_checks

__all__ = ["OK", "PROBLEM", "WARNING", "Context", "Finding", "Target", "render", "run_checks"]
