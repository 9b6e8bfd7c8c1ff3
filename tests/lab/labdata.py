"""The lab's side of tests/lab/inventory.py and tests/lab/group_data/: what the booted lab says about itself.

`state()` is `labctl status --json` (hosts, addresses, domains, users, key files of the running lab whose id
is $MAILSTEAD_LAB_ID); `lab_inventory()` turns it into the inventory's groups, each lab host with its
addresses and the SSH settings that reach it through the lab's network namespace; `lab_users()` gives the
group data the lab users with Dovecot password hashes. mailstead itself knows nothing of this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

from mailstead.secrets import write_private

LABCTL = Path(__file__).resolve().parent / "labctl"
GROUP_ORDER = ("mailservers", "spamtraps", "staging", "production")


class LabNotUp(RuntimeError):
    pass


def lab_id() -> str:
    return os.environ.get("MAILSTEAD_LAB_ID", "lab")


@lru_cache(maxsize=None)
def state(lab: str | None = None) -> dict:
    """What `labctl status --json` says about the lab (hosts, domains, users, key files)."""
    env = dict(os.environ, MAILSTEAD_LAB_ID=lab or lab_id())
    proc = subprocess.run([str(LABCTL), "status", "--json"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise LabNotUp(
            f"the lab '{env['MAILSTEAD_LAB_ID']}' is not up (labctl status exited {proc.returncode}): "
            "run `make lab` (or tests/lab/labctl up) first"
        )
    return json.loads(proc.stdout)


def lab_users(domain: str) -> list[dict]:
    """The lab's users of `domain` with Dovecot password hashes (made once, cached in the lab state dir)."""
    from mailstead.passwords import hash_password

    st = state()
    cache_file = Path(st["state_dir"]) / "user-hashes.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    users, changed = [], False
    for dom in st["domains"]:
        if dom["domain"] != domain:
            continue
        for user in dom["users"]:
            fingerprint = hashlib.sha256(user["password"].encode()).hexdigest()
            entry = cache.get(user["address"])
            if not entry or entry["fingerprint"] != fingerprint:
                entry = {"fingerprint": fingerprint, "hash": hash_password(user["password"])}
                cache[user["address"]] = entry
                changed = True
            users.append({"address": user["address"], "password_hash": entry["hash"], "quota": "1G"})
    if changed:
        write_private(cache_file, json.dumps(cache, indent=1))
    return users


def lab_inventory() -> dict[str, list]:
    """Inventory groups (the same names as for real servers) holding the lab's mailstead hosts: roles first,
    environments last; each host once with its host data (addresses, spamtrap position, SSH through the
    lab's network namespace with strict host keys)."""
    st = state()
    groups: dict[str, list] = {name: [] for name in GROUP_ORDER}
    for h in st["hosts"]:
        roles = [r for r in h["roles"] if r in ("mailservers", "spamtraps")]
        if not roles:
            continue  # the infra host is the lab's outside world, not a mailstead host
        data = {"ipv4": h["ipv4"], "ipv6": h["ipv6"]}
        if h.get("spamtrap_position"):
            data["spamtrap_position"] = h["spamtrap_position"]
        data.update(
            ssh_hostname=h["ipv4"],
            ssh_user="root",
            ssh_key=st["ssh_key"],
            ssh_config_file=st["ssh_config"],
            ssh_known_hosts_file=st["known_hosts"],
            ssh_strict_host_key_checking="yes",
        )
        entry = (h["name"], data)
        for role in roles:
            groups[role].append(entry)
        groups[h["environment"]].append(h["name"])
    return groups
