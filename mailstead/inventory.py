"""Validate every host's settings while pyinfra runs inventory.py — before it connects to anything.

pyinfra executes the inventory file, then loads group data, then connects; deploy.py runs only
after connecting. So inventory.py calls ``check(...)``, which loads the group data itself from where
pyinfra 3 reads it (``group_data/`` of the current directory, then ``group_data/`` next to the inventory
file when that is another directory; for a key set in both, the second wins), merges it with pyinfra's
precedence while remembering which file every key came from, validates each host and each environment,
and raises ``SettingsError`` (a clean pyinfra CLI error: one message, exit status 1, no traceback, no SSH
connection). pyinfra's ``--group-data DIR`` option is not seen by check(): keep group data in those two places.

The deploy machine's commands (``python -m mailstead dns|dkim ... --inventory FILE``) load an inventory file
with pyinfra's own loader (``load_inventory``) and build each environment from its hosts
(``environments``), as deploy.py does with the inventory pyinfra was given.

In inventory.py::

    from mailstead.inventory import check

    mailservers = [("mx1.example.org", {"ipv4": "198.51.100.10"})]
    spamtraps = [("trap1.example.org", {"ipv4": "198.51.100.20", "spamtrap_position": "first"})]
    production = ["mx1.example.org", "trap1.example.org"]

    check({"mailservers": mailservers, "spamtraps": spamtraps, "production": production})
    # or: check(dict(globals()))  — non-group variables are skipped the way pyinfra skips them
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from .settings import (
    ENVIRONMENT_WIDE_FIELDS,
    EnvironmentSettings,
    Issue,
    Settings,
    SettingsError,
    build_environment,
    collect_issues,
    environment_data,
    environment_wide_message,
    from_host,
    is_data_value,
)

__all__ = ["check", "check_environments", "environments", "load_environment", "load_environment_settings",
           "load_group_data", "load_inventory", "SettingsError"]

NO_HOSTS = ("lists no hosts: add your servers to mailservers/spamtraps and staging/production, "
            "see README 'Real servers: quick start'")


def _imported_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name)
    return names


def load_group_data(path: str | os.PathLike, label: str | None = None) -> dict[str, Any]:
    """Execute one group_data file like pyinfra does and return its settings (flat module variables;
    names bound by imports, names starting with '_' and helper functions/classes are left out;
    ``__all__`` selects the names when present)."""
    path = str(path)
    label = label or path
    try:
        with open(path, encoding="utf-8") as f:
            code_str = f.read()
        tree = ast.parse(code_str, filename=path)
        code = compile(tree, path, "exec")
    except SyntaxError as e:
        raise SettingsError([Issue(label, "", f"line {e.lineno}: Python syntax error: {e.msg}; fix the file")]) from None
    except OSError as e:
        raise SettingsError([Issue(label, "", f"cannot read: {e.strerror}")]) from None
    attrs: dict[str, Any] = {"__file__": path}
    try:
        exec(code, attrs)
    except SettingsError:
        raise
    except Exception as e:  # noqa: BLE001 - user code; name the file and line instead of a traceback
        tb = e.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == path:
                line = tb.tb_lineno
            tb = tb.tb_next
        where = f"line {line}: " if line else ""
        raise SettingsError([Issue(label, "", f"{where}{type(e).__name__}: {e}; fix the file")]) from None
    if "__all__" in attrs:
        keys = set(attrs["__all__"])
    else:
        imported = _imported_names(tree)
        keys = {k for k in attrs if k not in imported}
    return {
        k: v
        for k, v in attrs.items()
        if k in keys and not k.startswith("_") and is_data_value(v)
    }


def _is_group(key: str, value: Any) -> bool:
    """The same test pyinfra applies to inventory.py's module variables."""
    if not isinstance(key, str) or key.startswith("_"):
        return False
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list) and isinstance(value[1], dict):
        value = value[0]
    if not isinstance(value, list):
        return False
    return all(isinstance(item, (str, tuple)) for item in value)


def _name_data(item: Any) -> tuple[str, dict]:
    if isinstance(item, tuple):
        name = item[0]
        data = item[1] if len(item) > 1 and isinstance(item[1], dict) else {}
        return name, data
    return item, {}


def _caller_file(depth: int = 2) -> str | None:
    try:
        return sys._getframe(depth).f_globals.get("__file__")
    except ValueError:  # pragma: no cover
        return None


def _label(path: Path, root: Path) -> str:
    """``path`` as a message names it: relative to the directory pyinfra runs in when inside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def group_data_dirs(inventory_file: str | os.PathLike, cwd: str | os.PathLike | None = None) -> list[Path]:
    """Where pyinfra 3 reads group data for ``inventory_file`` run from ``cwd``, lowest precedence first:
    ``<cwd>/group_data``, then ``group_data`` next to the inventory file if that is another directory."""
    root = Path(cwd if cwd is not None else os.getcwd()).resolve()
    dirs = [root / "group_data"]
    inventory_dir = Path(inventory_file).resolve().parent
    if inventory_dir != root:
        dirs.append(inventory_dir / "group_data")
    return dirs


def check(
    groups: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike | None = None,
    inventory_file: str | os.PathLike | None = None,
) -> dict[str, Settings]:
    """Validate every host and every environment of an inventory; return {host name: Settings}.

    ``groups``: group name -> list of hosts (names or (name, data) tuples) or (hosts, data), exactly as
    inventory.py defines them; dict order is precedence (later groups win, like pyinfra); an ``all``
    entry gives the lowest-precedence data. Non-group values (e.g. ``dict(globals())``) are skipped.
    Called from an inventory file, the group data comes from where pyinfra reads it for that file run from
    the current directory (``group_data_dirs``). Callers that are not the inventory file give either
    ``inventory_file`` (the file whose groups these are) or ``base_dir`` (a project directory that holds both
    the inventory and its ``group_data/``, pyinfra run there).
    Raises SettingsError listing every problem with the file it came from; an inventory without hosts is
    one of them.
    """
    return check_environments(groups, base_dir=base_dir, inventory_file=inventory_file or _caller_file())[0]


def check_environments(
    groups: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike | None = None,
    inventory_file: str | os.PathLike | None = None,
) -> tuple[dict[str, Settings], dict[str, EnvironmentSettings]]:
    """check(), returning ({host name: Settings}, {environment name: EnvironmentSettings})."""
    caller_file = _caller_file()
    if base_dir is not None:
        root = Path(base_dir).resolve()
        dirs = [root / "group_data"]
        inv_label = "inventory.py"
    else:
        root = Path.cwd().resolve()
        inventory_file = inventory_file or caller_file
        inventory_path = Path(inventory_file).resolve() if inventory_file else root / "inventory.py"
        dirs = group_data_dirs(inventory_path, root)
        inv_label = _label(inventory_path, root)

    all_hosts: list[str] = []
    all_inline: dict[str, Any] = {}
    host_tuple_data: dict[str, dict[str, Any]] = {}
    group_hosts: dict[str, list[str]] = {}
    group_inline: dict[str, dict[str, Any]] = {}
    for gname, value in groups.items():
        if not _is_group(gname, value):
            continue
        inline: dict[str, Any] = {}
        if isinstance(value, tuple):
            value, inline = value
        names = []
        for item in value:
            name, data = _name_data(item)
            names.append(name)
            host_tuple_data.setdefault(name, {}).update(data)
        if gname == "all":
            all_hosts = names
            all_inline = dict(inline)
            continue
        group_hosts[gname] = names
        group_inline[gname] = dict(inline)
        for n in names:
            if n not in all_hosts:
                all_hosts.append(n)

    if not all_hosts:
        raise SettingsError([Issue(inv_label, "", NO_HOSTS)], before_connect=True)

    issues: list[Issue] = []
    # group name -> [(file label, its data)], in pyinfra's order (a later directory's file wins)
    files: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for gd in dirs:
        if not gd.is_dir():
            continue
        for p in sorted(gd.glob("*.py")):
            label = _label(p, root)
            try:
                files.setdefault(p.stem, []).append((label, load_group_data(p, label)))
            except SettingsError as e:
                issues.extend(e.issues)
    # a group_data file whose name is a typo of a group is silently ignored by pyinfra: say so
    import difflib

    known = set(group_hosts) | {"all"}
    for stem, layers in files.items():
        if stem not in known:
            close = difflib.get_close_matches(stem, sorted(known), n=1, cutoff=0.75)
            if close:
                for label, _ in layers:
                    issues.append(Issue(label, "", f"no inventory group is named {stem!r}, so this file applies "
                                                   f"to no host; did you mean {label[:-len(stem) - 3]}{close[0]}.py?"))

    def layered(groups: list[str], host: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        """The data of the all group, then of ``groups`` in order, then of ``host``, with the file of each key."""
        data: dict[str, Any] = {}
        src: dict[str, str] = {}

        def put(layer: Mapping[str, Any], label: str) -> None:
            for k, v in layer.items():
                data[k] = v
                src[k] = label

        put(all_inline, f"the all group's data in {inv_label}")
        for label, layer in files.get("all", []):
            put(layer, label)
        for g in groups:
            put(group_inline.get(g, {}), f"the {g} group's data in {inv_label}")
            for label, layer in files.get(g, []):
                put(layer, label)
        if host is not None:
            put(host_tuple_data.get(host, {}), f"host data of {host} in {inv_label}")
        return data, src

    if issues:  # a file that does not load: report that alone (the rest would be noise)
        raise SettingsError(issues, before_connect=True)

    result: dict[str, Settings] = {}
    sources: dict[str, dict[str, str]] = {}
    for name in all_hosts:
        host_groups = [g for g, names in group_hosts.items() if name in names]
        data, src = layered(host_groups, name)
        settings, host_issues = collect_issues(name, host_groups, data, src)
        issues.extend(host_issues)
        if settings is not None:
            result[name] = settings
            sources[settings.fqdn] = src

    # environments: a host must not sit in another environment's group; each environment must agree
    envs: dict[str, list[Settings]] = {}
    for name, s in result.items():
        envs.setdefault(s.environment, []).append(s)
    for name, s in result.items():
        others = [e for e in envs if e != s.environment and e in s.groups]
        if others:
            issues.append(Issue(inv_label, "environment", f"{name} is in the groups of two environments "
                                                               f"({s.environment}, {', '.join(others)}); keep "
                                                               "staging and production host lists disjoint",
                                [name]))
            continue
        # an environment-wide key in a role's, another group's or a host's data would not reach the environment
        # (it reads group_data/all.py and group_data/<environment>.py only): say so, for every such layer
        groups_of = [g for g in s.groups if g in group_hosts and g != s.environment]
        per_host = [(f"the {g} group's data in {inv_label}", group_inline.get(g, {})) for g in groups_of]
        per_host += [(label, layer) for g in groups_of for label, layer in files.get(g, [])]
        per_host.append((f"host data of {name} in {inv_label}", host_tuple_data.get(name, {})))
        for label, layer in per_host:
            for key in sorted(set(layer) & set(ENVIRONMENT_WIDE_FIELDS)):
                issues.append(Issue(label, key, environment_wide_message(s.environment), [name]))
    built: dict[str, EnvironmentSettings] = {}
    complete = not issues  # with a bad host, the environment's own values are still checked (all_hosts)
    for env, hosts in envs.items():
        data, src = layered([env])
        try:
            built[env] = build_environment(env, {k: v for k, v in data.items() if k in ENVIRONMENT_WIDE_FIELDS},
                                           src, hosts, sources,
                                           all_hosts=None if complete else group_hosts.get(env, []))
        except SettingsError as e:
            issues.extend(e.issues)

    if issues:
        raise SettingsError(issues, before_connect=True)
    return result, built


def load_inventory(inventory_path: str | os.PathLike = "inventory.py"):
    """The pyinfra Inventory of an inventory file, loaded by pyinfra's own loader as
    ``pyinfra INVENTORY deploy.py`` run from the current directory loads it (no SSH): the file runs (and its
    check() validates every host), group data comes from where pyinfra reads it."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory_from_files
    from pyinfra_cli.util import PYTHON_CODES

    path = Path(inventory_path)
    if not path.is_file():
        raise SettingsError([Issue(str(inventory_path), "", "no such inventory file; give it with --inventory FILE")],
                            before_connect=True)
    # pyinfra keeps each file's compiled code by file name for the life of the process: a second load after a
    # day-2 command edited a group_data file would run the old text
    PYTHON_CODES.clear()
    with ctx_state.use(State()):
        return make_inventory_from_files(str(path), cwd=os.getcwd())


def environments(inventory: Any) -> dict[str, EnvironmentSettings]:
    """{environment name: EnvironmentSettings} of a pyinfra inventory: each environment's own data
    (group_data/all.py and group_data/<environment>.py) and every host it lists (``--limit`` does not narrow it),
    each with the settings pyinfra gives it (from_host). deploy.py passes the inventory pyinfra was given; the
    deploy machine's commands pass load_inventory(--inventory)."""
    by_env: dict[str, list[Settings]] = {}
    for h in inventory:
        s = from_host(h)
        by_env.setdefault(s.environment, []).append(s)
    return {env: build_environment(env, *environment_data(inventory, env), hosts) for env, hosts in by_env.items()}


def load_environment(env: str, inventory_path: str | os.PathLike = "inventory.py") -> list[Settings]:
    """The settings of every host of one environment of an inventory file (no pyinfra run, no SSH)."""
    inventory = load_inventory(inventory_path)
    hosts = [s for s in (from_host(h) for h in inventory) if s.environment == env]
    if not hosts:
        known = sorted({from_host(h).environment for h in inventory})
        raise SettingsError([Issue(str(inventory_path), "", f"no host has environment {env!r}; known "
                                                          f"environments: {', '.join(known) or 'none'}")])
    return hosts


def load_environment_settings(env: str, inventory_path: str | os.PathLike = "inventory.py") -> EnvironmentSettings:
    """The EnvironmentSettings of one environment of an inventory file (no pyinfra run, no SSH)."""
    found = environments(load_inventory(inventory_path))
    if env not in found:
        raise SettingsError([Issue(str(inventory_path), "", f"no host has environment {env!r}; known "
                                                          f"environments: {', '.join(sorted(found)) or 'none'}")])
    return found[env]
