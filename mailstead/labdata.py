"""The lab's stand-in inventory: booted Debian 13 hosts (tests/lab/labctl) for staging and production.

`inventory.py` calls `lab_inventory()` when MAILSTEAD_INVENTORY=lab. Each lab host gets, as *host data*
(pyinfra's highest precedence), the settings of tests/lab/group_data/ merged like pyinfra merges group
data (all.py, then the host's roles, then its environment), its addresses, and the SSH keys to reach it
through the lab's network namespace. The user's group_data/ still applies underneath, so the lab runs the
very same deploy with lab domains, lab DNS, a lab CA and lab time servers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

from mailstead.inventory import load_group_data_file
from mailstead.secrets import write_private

ROOT = Path(__file__).resolve().parent.parent
LABCTL = ROOT / "tests" / "lab" / "labctl"
LAB_GROUP_DATA = ROOT / "tests" / "lab" / "group_data"
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


def _lab_settings(groups: list[str]) -> tuple[dict, dict]:
    """(merged data, key -> file it came from) of tests/lab/group_data for a host in `groups`."""
    data: dict = {}
    sources: dict = {}
    for name in ["all", *groups]:
        path = LAB_GROUP_DATA / f"{name}.py"
        if path.exists():
            values = load_group_data_file(str(path))
            data.update(values)
            sources.update(dict.fromkeys(values, str(path.relative_to(ROOT))))
    return data, sources


def lab_inventory() -> tuple[dict[str, list], dict[str, dict[str, str]]]:
    """Inventory groups (same names as for real servers) holding the lab's hosts with their data, and for
    each host where each of its settings came from (so a bad lab value names its tests/lab file)."""
    st = state()
    groups: dict[str, list] = {name: [] for name in GROUP_ORDER}
    sources: dict[str, dict[str, str]] = {}
    for h in st["hosts"]:
        roles = [r for r in h["roles"] if r in ("mailservers", "spamtraps")]
        if not roles:
            continue  # the infra host is the lab's outside world, not a mailstead host
        env = h["environment"]
        data, where = _lab_settings([*roles, env])
        host_facts = {"ipv4": h["ipv4"], "ipv6": h["ipv6"]}
        if h.get("spamtrap_position"):
            host_facts["spamtrap_position"] = h["spamtrap_position"]
        data.update(host_facts)
        where.update(dict.fromkeys(host_facts, "tests/lab/topology.py"))
        data.update(
            ssh_hostname=h["ipv4"],
            ssh_user="root",
            ssh_key=st["ssh_key"],
            ssh_config_file=st["ssh_config"],
            ssh_known_hosts_file=st["known_hosts"],
            ssh_strict_host_key_checking="yes",
        )
        sources[h["name"]] = where
        entry = (h["name"], data)
        for role in roles:
            groups[role].append(entry)
        groups[env].append(h["name"])
    return groups, sources
