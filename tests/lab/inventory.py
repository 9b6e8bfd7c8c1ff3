"""The lab's inventory: the booted Debian 13 hosts of `tests/lab/labctl up` as staging and production.

Run from the repository root, from the lab's outside world (its network namespace), as `make lab-deploy` does:

    tests/lab/labctl net -- .venv/bin/pyinfra -y tests/lab/inventory.py deploy.py [--limit staging]

The groups, their order and the deploy are those of the top-level inventory.py (real servers); the hosts,
their addresses and SSH settings come from the running lab ($MAILSTEAD_LAB_ID, see labdata.py). pyinfra
reads group data from group_data/ of the current directory and then from tests/lab/group_data/ next to
this file; a key set in both comes from tests/lab/group_data/, which sets every key the lab needs
(lab domains and users, the lab's PowerDNS, the lab CA, lab time servers).
"""

import sys
from pathlib import Path

_here = str(Path(__file__).resolve().parent)
if _here not in sys.path:
    sys.path.insert(0, _here)  # labdata, for this file and for tests/lab/group_data/

from labdata import lab_inventory  # noqa: E402

from mailstead.inventory import check  # noqa: E402

_groups = lab_inventory()
check(_groups)

mailservers = _groups["mailservers"]
spamtraps = _groups["spamtraps"]
staging = _groups["staging"]
production = _groups["production"]
