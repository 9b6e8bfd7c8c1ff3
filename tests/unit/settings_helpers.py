"""Builds the real settings models of one host and its environment from one dict of group_data keys, as the
unit tests of the tasks need them (a helpers module, no tests)."""

from __future__ import annotations

from mailstead.settings import EnvironmentSettings, Settings, build_environment, build_settings


def host_and_env(fqdn: str, groups: list[str], data: dict) -> tuple[Settings, EnvironmentSettings]:
    """(the host's Settings, its EnvironmentSettings) from ``data``: the environment-wide keys go to the
    environment, the others to the host, as the inventory check splits them."""
    host = build_settings(fqdn, groups, data, {})
    return host, build_environment(host.environment, data, {}, [host])
