"""The lab's topology: pure data, standard library only.

Imported by tests/lab/labctl (through lablib); tests/lab/labdata.py reads it through `labctl status --json`.
Addresses are the same in every lab: each lab lives in its own network namespaces,
and every name the lab creates on this machine carries the lab id.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

DEFAULT_LAB_ID = "lab"
LAB_ID_RE = re.compile(r"^[a-z0-9]{1,8}$")

PREFIX_V4 = "198.51.100.0/24"
PREFIX_V6 = "2001:db8:51::/64"
GATEWAY_V4 = "198.51.100.1"
GATEWAY_V6 = "2001:db8:51::1"
# More addresses of the outside world (on the same bridge) for tests that need distinct outside clients:
# OUTSIDE_ALT_V4 is "another sender" (e.g. a password guesser next to a legitimate user), the pool gives a
# handful of fresh sources (e.g. hostile inputs that should not all count against one address).
OUTSIDE_ALT_V4 = "198.51.100.250"
OUTSIDE_POOL_V4 = tuple(f"198.51.100.{i}" for i in range(240, 250))
REVERSE_ZONE_V4 = "100.51.198.in-addr.arpa."
REVERSE_ZONE_V6 = "0.0.0.0.1.5.0.0.8.b.d.0.1.0.0.2.ip6.arpa."

# Groups that name an environment (the others are roles).
ENVIRONMENTS = ("staging", "production")


@dataclass(frozen=True)
class Host:
    short: str
    fqdn: str
    ipv4: str
    ipv6: str
    groups: tuple[str, ...]
    spamtrap_position: str | None = None

    @property
    def environment(self) -> str | None:
        envs = [g for g in self.groups if g in ENVIRONMENTS]
        return envs[0] if envs else None

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(g for g in self.groups if g not in ENVIRONMENTS)


HOSTS: tuple[Host, ...] = (
    Host("infra", "infra.lab.test", "198.51.100.10", "2001:db8:51::10", ("infra",)),
    Host("mail-staging", "mail.staging.test", "198.51.100.11", "2001:db8:51::11",
         ("staging", "mailservers")),
    Host("mail-prod", "mail.production.test", "198.51.100.12", "2001:db8:51::12",
         ("production", "mailservers")),
    Host("trap1", "trap1.production.test", "198.51.100.13", "2001:db8:51::13",
         ("production", "spamtraps"), "first"),
    Host("trap2", "trap2.production.test", "198.51.100.14", "2001:db8:51::14",
         ("production", "spamtraps"), "last"),
)

INFRA = "infra"  # short name of the host running the lab's PowerDNS


@dataclass(frozen=True)
class Domain:
    domain: str
    environment: str
    users: tuple[str, ...] = ("alice", "bob")

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(f"{u}@{self.domain}" for u in self.users)


DOMAINS: tuple[Domain, ...] = (
    Domain("staging.test", "staging"),
    Domain("production.test", "production"),
)

# PowerDNS on infra.
PDNS_HOST = "198.51.100.10"
PDNS_API_URL = "http://198.51.100.10:8081"
TSIG_KEY_NAME = "mailstead-lab"
TSIG_ALGORITHM = "hmac-sha256"
NAMESERVER = "infra.lab.test."
FORWARD_ZONES = ("staging.test.", "production.test.", "lab.test.", "rfc2136.test.")
DYNAMIC_UPDATE_ZONE = "rfc2136.test."
ZONES = FORWARD_ZONES + (REVERSE_ZONE_V4, REVERSE_ZONE_V6)

# The port the hosts use for apt (the lab's bridge on the gateway address).
APT_PROXY_PORT = 3142


def lab_id(value: str | None = None) -> str:
    """The lab id: the argument, else $MAILSTEAD_LAB_ID, else 'lab'."""
    value = value or os.environ.get("MAILSTEAD_LAB_ID") or DEFAULT_LAB_ID
    if not LAB_ID_RE.match(value):
        raise ValueError(f"lab id {value!r} must match [a-z0-9]{{1,8}}")
    return value


def host(name: str) -> Host:
    """Look a host up by short name or fqdn (a trailing dot is ignored)."""
    name = name.rstrip(".")
    for h in HOSTS:
        if name in (h.short, h.fqdn):
            return h
    raise KeyError(f"no lab host {name!r}; known: {', '.join(h.short for h in HOSTS)}")


def domain_of(fqdn: str) -> Domain | None:
    for d in DOMAINS:
        if fqdn.endswith("." + d.domain):
            return d
    return None


@dataclass(frozen=True)
class Names:
    """Every name one lab creates on this machine."""
    lab_id: str
    netns: str = field(init=False)
    run_dir: str = field(init=False)
    etc_netns_dir: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "netns", f"{self.lab_id}net")
        object.__setattr__(self, "run_dir", f"/run/mailstead-{self.lab_id}")
        object.__setattr__(self, "etc_netns_dir", f"/etc/netns/{self.lab_id}net")

    def host_netns(self, short: str) -> str:
        return f"{self.lab_id}-{short}"

    def machine(self, short: str) -> str:
        return f"{self.lab_id}-{short}"

    def cgroup(self, short: str) -> str:
        return f"mailstead-{self.lab_id}-{short}"


def reverse_name_v4(addr: str) -> str:
    return ".".join(reversed(addr.split("."))) + ".in-addr.arpa."


def reverse_name_v6(addr: str) -> str:
    import ipaddress
    return ipaddress.IPv6Address(addr).reverse_pointer + "."

# pebble (the lab's ACME CA) on infra: ACME on 14000 (a lab world CA certificate for infra.lab.test),
# management on 15000 (/roots/0: the current issuing root).
ACME_DIRECTORY = "https://infra.lab.test:14000/dir"
ACME_MANAGEMENT_URL = "https://infra.lab.test:15000"
