"""Shared builders for the DNS unit tests (no tests here): real settings models, no mocks."""

from __future__ import annotations

from mailstead.settings import EnvironmentSettings, build_settings

MAIL = ("mail.example.org", {"ipv4": "198.51.100.10", "ipv6": "2001:db8:51::10"})
TRAP_FIRST = ("mx1.example.org", {"ipv4": "198.51.100.20", "ipv6": "2001:db8:51::20", "spamtrap_position": "first"})
TRAP_LAST = ("mx3.example.org", {"ipv4": "198.51.100.30", "spamtrap_position": "last"})


def make_env(hosts=(MAIL, TRAP_FIRST, TRAP_LAST), environment="production", **shared) -> EnvironmentSettings:
    """EnvironmentSettings from host tuples (fqdn, host data); ``shared`` = group_data keys for all hosts."""
    base = {"environment": environment, "domains": ["example.org"], "admin_email": "postmaster@example.org"}
    base.update(shared)
    settings = []
    for fqdn, data in hosts:
        role = "spamtraps" if "spamtrap_position" in data else "mailservers"
        settings.append(build_settings(fqdn, [role, environment], {**base, **data}, {}))
    return EnvironmentSettings.from_hosts(settings)


def by_key(records):
    return {(r.name, r.type): r for r in records}
