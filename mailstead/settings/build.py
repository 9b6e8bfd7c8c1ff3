"""Building a host's settings from pyinfra's merged data, naming the file each value came from."""

from __future__ import annotations

import re
import types
from typing import Any, Mapping

from pydantic import ValidationError

from mailstead.settings.checks import _SemanticIssues, ssh_lockout_issues
from mailstead.settings.environment import (
    HOSTS_VIEW_FIELDS,
    EnvironmentSettings,
    environment_issues,
    hosts_view,
)
from mailstead.settings.errors import Issue, SettingsError
from mailstead.settings.fields import (
    _DERIVED_KEYS,
    _PLAINTEXT_KEYS,
    ENVIRONMENT_WIDE_FIELDS,
    PYINFRA_KEY_PREFIXES,
    ROLES,
)
from mailstead.settings.host import Settings
from mailstead.settings.messages import _issue_from_error

# --------------------------------------------------------------------------------------------
# Building from merged data with source attribution


def is_data_value(value: Any) -> bool:
    """Helpers (functions, classes, modules) in a group_data file are not settings."""
    return not isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type))


def is_pyinfra_key(key: str) -> bool:
    """pyinfra's own keys (connector data such as ssh_user, global arguments such as _sudo), which the settings
    leave alone; a setting of ours that shares a prefix (ssh_allow_root_keys) is not one of them."""
    return key.startswith(PYINFRA_KEY_PREFIXES) and key not in Settings.model_fields


def environment_wide_message(environment: str) -> str:
    return (f"is environment-wide (the same for every host of the environment): set it once in "
            f"group_data/{environment}.py (or group_data/all.py), not per role or per host")


def _host_sources(host: Any) -> dict[str, str]:
    """key -> where the value pyinfra gives this host comes from (highest precedence first)."""
    sources: dict[str, str] = {}
    inv = getattr(host, "inventory", None)
    if inv is None:
        return sources
    layers: list[tuple[str, Mapping]] = []
    try:
        layers.append(("the --data command-line option", inv.get_override_data() or {}))
        layers.append((f"host data of {host.name} in inventory.py", inv.get_host_data(host.name) or {}))
        for g in reversed(list(host.groups)):
            layers.append((f"group_data/{g}.py", inv.get_group_data(g) or {}))
        layers.append(("group_data/all.py", inv.get_data() or {}))
    except Exception:  # pragma: no cover - attribution is best effort
        return sources
    for label, data in layers:
        for key in data:
            sources.setdefault(key, label)
    return sources




def build_settings(name: str, groups: list[str], data: Mapping[str, Any], sources: Mapping[str, str]) -> Settings:
    """Validate one host's merged data; raise SettingsError with file attribution."""
    issues = collect_issues(name, groups, data, sources)
    if issues[0] is None:
        raise SettingsError(issues[1])
    return issues[0]


def collect_issues(
    name: str, groups: list[str], data: Mapping[str, Any], sources: Mapping[str, str]
) -> tuple[Settings | None, list[Issue]]:
    def src(key: str) -> str:
        host_keys = ("fqdn", "ipv4", "ipv6", "spamtrap_position")
        return sources.get(key, f"host data of {name} in inventory.py" if key in host_keys else "inventory.py")

    issues: list[Issue] = []
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or is_pyinfra_key(key) or not is_data_value(value):
            continue
        if key in _DERIVED_KEYS:
            issues.append(Issue(src(key), key, f"{key} come from the host's groups in inventory.py, not from "
                                               f"group_data; remove {key} and add the host to the mailservers "
                                               "or spamtraps group", [name]))
            continue
        if key in ENVIRONMENT_WIDE_FIELDS:
            continue  # the environment's own (build_environment); check() refuses it outside its files
        clean[key] = value
    clean.setdefault("fqdn", name)
    clean["groups"] = tuple(groups)
    clean["roles"] = tuple(r for r in ROLES if r in groups)
    if issues:
        return None, issues
    try:
        settings = Settings.model_validate(clean)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        plaintext = {tuple(err["loc"][:-1]) for err in errors
                     if err.get("type") == "extra_forbidden" and err["loc"][-1] in _PLAINTEXT_KEYS}
        for err in errors:
            loc = tuple(err.get("loc", ()))
            if err.get("type") == "missing" and loc[-1:] == ("password_hash",) and loc[:-1] in plaintext:
                continue  # the plaintext-password message already says what to write
            issues.append(_issue_from_error(err, clean, src, [name]))
        return None, issues
    except _SemanticIssues as e:
        for path, msg in e.issues:
            top = re.split(r"[.\[]", path, maxsplit=1)[0]
            label = src(top)
            if top in ("roles",):
                label = "inventory.py"
            issues.append(Issue(label, path, msg, [name]))
        return None, issues
    lockout = ssh_lockout_issues(settings, data)  # needs pyinfra's connection keys, which the model drops
    if lockout:
        return None, [Issue(src(path), path, msg, [name]) for path, msg in lockout]
    return settings, []


def from_host(host: Any) -> Settings:
    """The settings of a pyinfra host (``host.name``, ``host.groups``, ``host.data``).

    Raises SettingsError naming the group_data file of a bad value."""
    data = host.data.dict()
    sources = _host_sources(host)
    return build_settings(host.name, list(host.groups), data, sources)


def build_environment(
    name: str, data: Mapping[str, Any], sources: Mapping[str, str], hosts: list[Settings],
    host_sources: Mapping[str, Mapping[str, str]] | None = None, *, all_hosts: list[str] | None = None,
) -> EnvironmentSettings:
    """Validate one environment's settings: the environment-wide keys of ``data`` (its group_data/all.py and
    group_data/<name>.py merged; other keys are the hosts' business) and what its ``hosts`` add. ``sources``
    (key -> file) names the file of a bad value. Raises SettingsError.

    ``all_hosts``: the names of every host of the environment when some of them are not in ``hosts`` (their own
    settings are bad): the environment's values are still checked, so all problems are reported at once, but
    not what needs every host (the MX list, a mail host present)."""
    if all_hosts is None:
        issues = environment_issues(name, hosts, host_sources or {})
        if issues:
            raise SettingsError(issues)
    clean = {k: v for k, v in data.items() if k in ENVIRONMENT_WIDE_FIELDS}
    clean.update(hosts_view(hosts), environment=name)
    fqdns = all_hosts if all_hosts is not None else [h.fqdn for h in hosts]

    def src(key: str) -> str:
        return sources.get(key, f"group_data/{name}.py")

    try:
        return EnvironmentSettings.model_validate(clean)
    except ValidationError as e:
        raise SettingsError([_issue_from_error(err, clean, src, fqdns, root=EnvironmentSettings)
                             for err in e.errors(include_url=False) if err.get("loc", ("",))[0]
                             not in HOSTS_VIEW_FIELDS]) from None
    except _SemanticIssues as e:
        raise SettingsError([Issue(src(re.split(r"[.\[]", path, maxsplit=1)[0]), path, msg, fqdns)
                             for path, msg in e.issues]) from None


def environment_data(inventory: Any, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The environment-wide data of environment ``name`` in a pyinfra inventory, and where each key comes from:
    group_data/all.py, then group_data/<name>.py, then pyinfra's --data option (the later wins)."""
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, layer in (("group_data/all.py", inventory.get_data()),
                         (f"group_data/{name}.py", inventory.get_group_data(name)),
                         ("the --data command-line option", inventory.get_override_data())):
        for key, value in (layer or {}).items():
            if key in ENVIRONMENT_WIDE_FIELDS:
                data[key] = value
                sources[key] = label
    return data, sources
