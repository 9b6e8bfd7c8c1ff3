"""A safety net in this machine's root network namespace: nothing there may send to a lab prefix.

The lab's addresses live only inside the lab's network namespaces. From the root namespace a packet to one
of them would follow the machine's default route and leave the machine — a real incident happened that way
(a provider API call made outside `labctl net`). So while any lab is up, an nftables table in the root
namespace rejects locally generated packets to the lab prefixes (the sender gets an immediate error; nothing
is sent). It is a firewall rule, not an address or route, and it only affects the root namespace: the lab's
own namespaces keep their traffic. Removed when the last lab on this machine goes down.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import topology

TABLE = "mailstead_lab_guard"
RULESET = f"""table inet {TABLE} {{
  chain output {{
    type filter hook output priority 0; policy accept;
    ip daddr {topology.PREFIX_V4} meta l4proto tcp counter reject with tcp reset
    ip6 daddr {topology.PREFIX_V6} meta l4proto tcp counter reject with tcp reset
    ip daddr {topology.PREFIX_V4} counter reject
    ip6 daddr {topology.PREFIX_V6} counter reject
  }}
}}
"""


def _nft(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", *args], input=input, text=True, capture_output=True)


def active() -> bool:
    return _nft("list", "table", "inet", TABLE).returncode == 0


def ensure() -> bool:
    """Install the guard, or replace an outdated one atomically (idempotent). True when it changed."""
    listing = _nft("list", "table", "inet", TABLE)
    if listing.returncode == 0 and listing.stdout.count("reject") == RULESET.count("reject") \
            and "tcp reset" in listing.stdout:
        return False
    p = _nft("-f", "-", input=f"table inet {TABLE}\ndelete table inet {TABLE}\n{RULESET}")
    if p.returncode != 0:
        raise RuntimeError(f"could not install the root-namespace lab guard: {p.stderr.strip()}")
    return True


def remove_if_last(run_root: Path = Path("/run")) -> bool:
    """Remove the guard when no lab is up any more (no /run/mailstead-<id> left). True when removed."""
    if any(run_root.glob("mailstead-*")) or not active():
        return False
    return _nft("delete", "table", "inet", TABLE).returncode == 0
