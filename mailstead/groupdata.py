"""The day-2 commands' edits of an environment's group_data file, kept valid Python.

The commands never rewrite what a person wrote: they keep their changes in one block at the end of the file,
between two marker lines, as two literals (``_mailstead_users``: address -> user dict, or None for a removed
user; ``_mailstead_aliases``: source -> targets, or None for a removed alias) and two lines that apply them
over whatever ``users`` and ``aliases`` the file set above. Once `domain add` has run, the block also holds
``_mailstead_domains`` (the domains it added) and a line that appends them to the ``domains`` the file set
above; when the file sets no ``domains`` (they come from all.py), `domain add` records the environment's whole
list there, since a group_data file cannot see another file's values. Names starting with '_' are not settings
(pyinfra and mailstead.inventory skip them)."""

from __future__ import annotations

import ast
import os
import pprint
from pathlib import Path
from typing import Any

from mailstead.inventory import group_data_dirs

BEGIN = "# >>> mailstead day-2 commands (python -m mailstead user|alias) edit this block; do not edit it by hand"
END = "# <<< mailstead day-2 commands"


def environment_file(environment: str, inventory_file: str | os.PathLike, cwd: str | None = None) -> Path:
    """The group_data file of the environment that wins for that inventory (pyinfra reads group_data/ of the
    current directory first, then the one next to the inventory: the later file's keys win)."""
    candidates = [d / f"{environment}.py" for d in group_data_dirs(inventory_file, cwd)]
    existing = [c for c in candidates if c.is_file()]
    return existing[-1] if existing else candidates[0]


def read_block(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(users, aliases) of the block in ``text``; both empty when the file has none."""
    if BEGIN not in text:
        return {}, {}
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    found: dict[str, Any] = {}
    for node in ast.parse(body).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("_mailstead_users", "_mailstead_aliases"):
                found[name] = ast.literal_eval(node.value)
    return found.get("_mailstead_users", {}), found.get("_mailstead_aliases", {})


def read_domains(text: str) -> list[str]:
    """The domains `domain add` recorded in the block of ``text`` (empty when none)."""
    if BEGIN not in text:
        return []
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    for node in ast.parse(body).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "_mailstead_domains":
                return list(ast.literal_eval(node.value))
    return []


def sets_outside_block(text: str, name: str) -> bool:
    """True when the file's own text (not the block) assigns ``name`` at top level."""
    head = text.split(BEGIN, 1)[0]
    tail = text.split(BEGIN, 1)[1].split(END, 1)[1] if BEGIN in text and END in text else ""
    for part in (head, tail):
        for node in ast.parse(part).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    return True
    return False


def render_block(users: dict[str, Any], aliases: dict[str, Any], domains: list[str] | None = None) -> str:
    lines = [
        BEGIN,
        f"_mailstead_users = {pprint.pformat(users, width=110, sort_dicts=True)}",
        f"_mailstead_aliases = {pprint.pformat(aliases, width=110, sort_dicts=True)}",
        'users = [u for u in globals().get("users", []) if u["address"] not in _mailstead_users] + '
        "[u for u in _mailstead_users.values() if u]",
        'aliases = {**{k: v for k, v in globals().get("aliases", {}).items() if k not in _mailstead_aliases}, '
        "**{k: v for k, v in _mailstead_aliases.items() if v}}",
    ]
    if domains:  # only once `domain add` ran: a block of users and aliases stays as it was
        lines += [
            f"_mailstead_domains = {pprint.pformat(list(domains), width=110)}",
            'domains = list(dict.fromkeys([*globals().get("domains", []), *_mailstead_domains]))',
        ]
    return "\n".join(lines + [END]) + "\n"


def with_block(text: str, users: dict[str, Any], aliases: dict[str, Any], domains: list[str] | None = None) -> str:
    """``text`` with its block replaced by (or, the first time, followed by) the block of users/aliases/domains."""
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n") if END in rest else ""
    else:
        head, tail = text, ""
    head = head.rstrip("\n") + "\n\n" if head.strip() else ""
    return head + render_block(users, aliases, domains) + tail


def edit(path: Path, users: dict[str, Any] | None = None, aliases: dict[str, Any] | None = None,
         domains: list[str] | None = None) -> None:
    """Merge ``users``/``aliases`` (None values = removals) and ``domains`` (appended, each once) into the file's
    block; the file is replaced whole (written next to it, then renamed) and must still parse."""
    text = path.read_text() if path.exists() else ""
    cur_users, cur_aliases = read_block(text)
    cur_users.update(users or {})
    cur_aliases.update(aliases or {})
    cur_domains = list(dict.fromkeys(read_domains(text) + list(domains or [])))
    new = with_block(text, cur_users, cur_aliases, cur_domains)
    ast.parse(new, filename=str(path))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
