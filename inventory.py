"""Where mailstead deploys: your real servers, environments x roles.

Describe your servers here (host names and addresses) and everything else in group_data/.
- Environments: `staging` and `production`. A host belongs to exactly one; keep the lists disjoint.
- Roles: `mailservers` (the real MX, IMAP and submission host) and `spamtraps` (MX hosts that never
  accept mail; see group_data/spamtraps.py).
- Host data: `ipv4`/`ipv6` (the public addresses published in DNS), `spamtrap_position` for traps
  ("first" = lowest MX preference, "last" = highest), and pyinfra's connection keys (ssh_user, ...).

Group order matters: data of later groups overrides earlier ones, so roles come first, environments last.
Every setting is validated here, before pyinfra connects to any host; while no host is listed, the run stops
and says what to fill in (README, "Real servers: quick start").

The lab (booted Debian 13 hosts on this machine, for the tests) has its own inventory:
tests/lab/inventory.py.
"""

from mailstead.inventory import check

# Your servers. Example (uncomment and edit):
# _mail = ("mail.example.org", {"ipv4": "<public IPv4>", "ipv6": "<public IPv6>"})
# _staging_mail = ("mail.staging.example.org", {"ipv4": "...", "ipv6": "..."})
# _trap_first = ("mx1.example.org", {"ipv4": "...", "spamtrap_position": "first"})
# _trap_last = ("mx3.example.org", {"ipv4": "...", "spamtrap_position": "last"})

mailservers = []  # [_mail, _staging_mail]
spamtraps = []  # [_trap_first, _trap_last]
staging = []  # ["mail.staging.example.org"]
production = []  # ["mail.example.org", "mx1.example.org", "mx3.example.org"]

check({"mailservers": mailservers, "spamtraps": spamtraps, "staging": staging, "production": production})
