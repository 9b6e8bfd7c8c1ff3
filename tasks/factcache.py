"""One host's facts read once while nothing changes, and many read in one SSH round trip.

pyinfra 3 runs a fact's command every time an operation asks for it: a no-op deploy of one mail host asked
~250 facts one by one (~30 ms each: two thirds of its time), although most of them were the same few
(``deb.DebPackages`` ten times, the pending markers 25 times) or a stat and a SHA-1 of a managed file.

Two pyinfra-side helpers, both invisible to the tasks:

* **A per-host fact memo.** A fact read on a host is kept and answered again for the same fact, arguments and
  connection arguments (``_sudo`` etc.) *until the deploy runs anything on that host*: every shell command
  that is not a fact read, every upload, rsync and Python function command of an operation empties the
  host's memo first. A fact answered from the memo is therefore exactly what pyinfra would read at that
  moment, as far as this deploy can tell (a change made by someone else on the host between two reads of
  the same run is the only thing it can miss, and that was a race before too).
* **Planned facts, read in a batch.** Operations announce, when the deploy file calls them, the facts their
  bodies will ask for (``plan``): ``checked_file``/``put_file`` the stat, SHA-1 and directory of their
  destination, ``ensure_directory`` its path, ``enable_and_start`` its unit's state, base its sysctl keys.
  With ``-y`` pyinfra runs the bodies only later, one by one; the first time a planned fact is asked for,
  every planned fact this memo has not read yet is fetched in a few shell commands of at most ~16 kB (each
  fact's own command, then its own ``process`` on its part of the output). After a change empties the memo,
  the next planned fact asked for fetches those of the operations still to come again: a deploy that changes
  one file pays one more batch, not one round trip per fact. A fact whose command fails in the batch is not
  kept: the operation then reads it the normal way, with pyinfra's own error handling.

``install()`` (deploy.py) hooks this into pyinfra's ``Host`` once per process.
"""

from __future__ import annotations

import copy
import shlex
from importlib.metadata import version
from typing import Any

from pyinfra import logger
from pyinfra.api import FactBase, StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.command import FunctionCommand
from pyinfra.api.facts import ShortFactBase

try:  # pyinfra's private helpers: only the versions in TESTED_PYINFRA are known to have them as used here
    from pyinfra.api.facts import _handle_fact_kwargs, _make_command
except ImportError:  # pragma: no cover - another pyinfra: install() leaves pyinfra alone
    _handle_fact_kwargs = _make_command = None
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage

_MEMO = "_mailstead_fact_memo"  # attributes of pyinfra's Host object: one memo and one plan per host
_PLAN = "_mailstead_fact_plan"
_READING = "_mailstead_reading_fact"
_MARK = "@@mailstead-fact"
_MISSING = "@@mailstead-missing-command"
_BATCH_BYTES = 16000
_original: dict[str, Any] = {}
TESTED_PYINFRA = ("3.10.0",)  # this module patches pyinfra's Host: re-check it (lab tests) before adding one


def _memo(host: Host) -> dict:
    """The host's memo; emptied when pyinfra moves on to another stage (prepare -> execute: facts read while
    preparing answer for the host as it was before any operation ran)."""
    stage = host.state.current_stage
    memo = getattr(host, _MEMO, None)
    if memo is None or memo.get("stage") != stage:
        memo = {"stage": stage}
        setattr(host, _MEMO, memo)
    return memo


def _plan(host: Host) -> dict:
    if not hasattr(host, _PLAN):
        setattr(host, _PLAN, {})
    return getattr(host, _PLAN)


def _key(host: Host, cls: type[FactBase], args, kwargs) -> tuple:
    """The fact's identity as pyinfra runs it: its class, its own arguments (normalised the way pyinfra
    normalises them) and the connection arguments of the operation asking (``_sudo``, ``_su_user``, ...)."""
    fact_kwargs, global_kwargs = _handle_fact_kwargs(host.state, host, cls, list(args or ()), dict(kwargs or {}))
    executor = {k: v for k, v in global_kwargs.items() if k in CONNECTOR_ARGUMENT_KEYS}
    own = sorted((k, v) for k, v in fact_kwargs.items() if k != "self")  # getcallargs names the instance too
    return (cls, repr(own), repr(sorted(executor.items())))


def forget(host: Host) -> None:
    """Empty the host's memo (something is about to change on it)."""
    if host.state is not None:
        setattr(host, _MEMO, None)


def plan(host: Host, cls: type[FactBase], **kwargs) -> None:
    """Announce that an operation of this host will ask for ``cls(**kwargs)`` (read in the next batch)."""
    if host.state is None:
        return
    _plan(host)[(cls, repr(sorted(kwargs.items())))] = (cls, kwargs)


def _get_fact(self: Host, name_or_cls, *args, **kwargs):
    if self.state is None or (isinstance(name_or_cls, type) and issubclass(name_or_cls, ShortFactBase)):
        return _original["get_fact"](self, name_or_cls, *args, **kwargs)
    cls = name_or_cls
    plan_key = (cls, repr(sorted(kwargs.items())))
    planned = not args and plan_key in _plan(self)
    if planned and self.state.current_stage == StateStage.Execute:
        del _plan(self)[plan_key]  # its operation runs now: later batches need not read it again
    key = _key(self, cls, args, kwargs)
    if planned and key not in _memo(self):
        _fetch_planned(self, key, kwargs)
    memo = _memo(self)
    if key in memo:
        logger.debug("%sfact %s (%s) from this deploy's earlier read", self.print_prefix, cls.__name__, key[1])
        return copy.deepcopy(memo[key])  # operations may change what they get (pyinfra's package lists)
    setattr(self, _READING, True)
    try:
        value = _original["get_fact"](self, cls, *args, **kwargs)
    finally:
        setattr(self, _READING, False)
    _memo(self)[key] = copy.deepcopy(value)
    return value


def _fetch_planned(host: Host, wanted: tuple, wanted_kwargs: dict) -> None:
    """Read the wanted fact and every planned one not read yet in one shell command, into the memo."""
    memo = _memo(host)
    tried = memo.setdefault("tried", set())  # planned facts this memo already asked for (kept or not)
    entries = []  # (key, fact instance)
    parts = []
    for cls, kwargs in [(wanted[0], wanted_kwargs), *_plan(host).values()]:
        if cls.shell_executable:
            continue
        key = _key(host, cls, (), kwargs)
        if key in memo or key in tried or key[2] != wanted[2]:
            continue  # read already, or another connection argument set (_sudo, ...): not in this command
        tried.add(key)
        fact = cls()
        fact_kwargs, _ = _handle_fact_kwargs(host.state, host, cls, [], dict(kwargs))
        command = _raw(_make_command(fact.command, dict(fact_kwargs)))
        requires = _raw(_make_command(fact.requires_command, dict(fact_kwargs)))
        if requires:
            command = (f"if command -v {requires} >/dev/null 2>&1; then ( {command} ); "
                       f"else echo {shlex.quote(_MISSING)}; fi")
        parts.append(f"echo {_MARK}; ( {command} ); echo \"{_MARK} $?\"")
        entries.append((key, fact))
    _, global_kwargs = _handle_fact_kwargs(host.state, host, wanted[0], [], {})
    executor = {k: v for k, v in global_kwargs.items() if k in CONNECTOR_ARGUMENT_KEYS}
    kept = 0
    while parts:
        # a few commands of at most ~16 kB each (one of ~70 kB stalled the SSH session)
        size, count = 0, 0
        while count < len(parts) and (count == 0 or size + len(parts[count]) < _BATCH_BYTES):
            size += len(parts[count]) + 2
            count += 1
        kept += _run_batch(host, executor, entries[:count], "; ".join(parts[:count]), memo)
        entries, parts = entries[count:], parts[count:]
    logger.debug("%s%d planned facts read in one go", host.print_prefix, kept)


def _run_batch(host: Host, executor: dict, entries: list, command: str, memo: dict) -> int:
    """Run one batch command and keep the facts it read successfully; returns how many it kept."""
    setattr(host, _READING, True)
    try:
        status, output = host.run_shell_command(StringCommand(command), **executor)
    except Exception as e:  # noqa: BLE001 - the operations read their facts one by one then
        logger.debug("%sbatched facts failed: %s", host.print_prefix, e)
        return 0
    finally:
        setattr(host, _READING, False)
    if not status:
        return 0
    sections: list[list[str]] = []
    for line in output.stdout_lines:
        if line == _MARK:
            sections.append([])
        elif sections:
            sections[-1].append(line)
    kept = 0
    for (key, fact), lines in zip(entries, sections):
        if not lines or not lines[-1].startswith(_MARK + " "):
            continue
        rc, lines = lines[-1].split()[-1], lines[:-1]
        if rc != "0" or lines == [_MISSING]:
            continue  # failed or missing command: the operation reads it itself, with pyinfra's handling
        try:
            memo[key] = fact.process(lines) if lines else fact.default()
        except Exception:  # noqa: BLE001 - same: read normally
            continue
        kept += 1
    return kept


def _raw(command) -> str | None:
    if command is None or command == "":
        return None
    return command.get_raw_value() if hasattr(command, "get_raw_value") else str(command)


def _changing(original):
    """``original`` (a Host method that runs something on the host), emptying the host's memo first unless it
    runs for a fact read."""

    def method(self: Host, *args, **kwargs):
        if not getattr(self, _READING, False):
            forget(self)
        return original(self, *args, **kwargs)

    method.__name__ = original.__name__
    return method


def _function_command_execute(self, state, host, connector_arguments):
    forget(host)
    return _original["function_execute"](self, state, host, connector_arguments)


def install() -> bool:
    """Hook the memo into pyinfra's Host (idempotent: deploy.py runs once per host). With a pyinfra this module
    was not tested with, nothing is hooked (facts are read one by one: slower, the same result); False then."""
    if _original:
        return True
    found = version("pyinfra")
    if found not in TESTED_PYINFRA or _make_command is None:
        logger.warning(f"mailstead: pyinfra {found} is not one tasks/factcache.py was tested with "
                       f"({', '.join(TESTED_PYINFRA)}): facts are read one by one (slower, the same result)")
        return False
    _original["get_fact"] = Host.get_fact
    _original["function_execute"] = FunctionCommand.execute
    Host.get_fact = _get_fact
    for name in ("run_shell_command", "put_file", "rsync"):
        setattr(Host, name, _changing(getattr(Host, name)))
    FunctionCommand.execute = _function_command_execute
    return True
