"""Shared building blocks of every task: render, stage, check, install, activate.

The rule they enforce: a daemon's live configuration is only ever replaced by a file that the daemon's own
checker accepted. ``checked_file`` uploads the new content into a root-only directory, gives it its owner and
mode there, moves it next to the live file, runs the checker on that staged copy, and only then moves it into
place; a failing check removes the staged copy, fails the deploy and leaves the running service and its old
file untouched.

State kept on the host (``/var/lib/mailstead``, root:root):

  staging/    0700: uploads land here, so no file content is ever readable by anyone but root before its
              owner and mode are set (pyinfra's own upload path goes through a world-readable temp file)
  pending/    0700: one empty file per action still owed to a service ("pending marker"), e.g.
              ``pending/dovecot`` = "dovecot must restart". ``checked_file(..., restarts="dovecot")`` writes
              the marker in the same shell command that moves the new file into place, before the move;
              ``restart_if("dovecot", ...)`` restarts when an operation changed *or* the marker exists and
              removes the marker only after the restart succeeded. A run interrupted between the two therefore
              leaves the restart to the next run instead of losing it (the next run sees no file change).

Using the markers in a task (e.g. switching tasks/opensmtpd.py from ``systemd.service(_if=any_changed(...))``):

    conf = checked_file(name="smtpd.conf", dest=..., content=..., check="smtpd -n -f {staged}",
                        restarts="opensmtpd")                 # the file and its marker, in one command
    table = checked_file(name="smtpd table x", dest=..., content=..., restarts="opensmtpd-table-x")
    mark_pending("opensmtpd", ops=install_ops)                # right after ops that cannot write it themselves
    enable_and_start("opensmtpd")
    restart = restart_if("opensmtpd", conf, *install_ops, clears=["opensmtpd-table-x"])
    run_pending(name="Reload smtpd table x", marker="opensmtpd-table-x", command="smtpctl update table x",
                ops=(table,), _if=lambda: not restart.did_change())
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path, PurePosixPath

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pyinfra import host, logger, state
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.api.output import format_text
from pyinfra.facts.files import Directory, File, FileContents, Sha1File
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import files, systemd
from pyinfra.operations.util.files import generate_color_diff

from mailstead import PROJECT_DIR
from tasks.factcache import plan

FILES_DIR = PROJECT_DIR / "files"


@dataclass
class Results:
    """What a stage hands on to the stages after it in one host's run. deploy.py makes one per host and passes
    it to every stage (``deploy(settings, env, results)``): results travel as arguments, never as module state."""

    tls_changed: list = field(default_factory=list)
    """the TLS stage's operations that replaced the certificate or key (daemons restart on them)"""
    acme_changed: list = field(default_factory=list)
    """tasks.certificates' operations that changed what the ACME client must get (its configuration, the
    account or certificate key): tasks.certificate_issue then runs the client even when it said "not due"."""
    dkim_changed: list = field(default_factory=list)
    """the DKIM stage's operations that installed keys (the signer reloads on them)"""
    smtpd_filters: list = field(default_factory=list)
    """OpenSMTPD filters of stages before it (tasks.opensmtpd.SmtpdFilter), after the built-in ones"""
    dovecot_settings: list = field(default_factory=list)
    """dovecot.conf lines of stages before it (e.g. IMAPSieve spam learning)"""
    sieve_scripts: dict = field(default_factory=dict)
    """global Sieve scripts of stages before Dovecot: path on the host -> source; the Dovecot stage checks and
    compiles them with sievec (e.g. the spam-to-Junk before-script, the IMAPSieve learning scripts)"""
    open_ports: list = field(default_factory=list)
    """TCP ports the stages before the firewall serve to the world (the firewall opens these and SSH only)"""
    firewall_rules: list = field(default_factory=list)
    """nft input-chain rules of stages before the firewall (e.g. trap-first's reject on 25), before its own"""
    firewall_sets: list = field(default_factory=list)
    """nft set declarations of the firewall table that those rules use (e.g. trap-first's source set)"""
STAGED_SUFFIX = ".mailstead-new"
STATE_DIR = "/var/lib/mailstead"
STAGING_DIR = f"{STATE_DIR}/staging"
PENDING_DIR = f"{STATE_DIR}/pending"
DAEMON_RELOAD = "systemd-daemon-reload"  # pending marker: a unit file or drop-in changed
# with _sudo/_su_user the SSH user uploads first and root copies; pyinfra's default temp file is
# /tmp/pyinfra-<sha1> (predictable name, mode from the umask): use a 0700 directory in the login user's home
# instead (SFTP and SSH commands both start in that home, so the relative path is the same for both)
LOGIN_UPLOAD_DIR = ".mailstead-upload"
_ESCALATION_ARGS = ("_sudo", "_su_user", "_doas", "_dzdo")
_MARKER_RE = re.compile(r"^[a-z0-9][a-z0-9@._-]*$")

_jinja = Environment(
    loader=FileSystemLoader(str(FILES_DIR)),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


@functools.cache
def dry_run() -> bool:
    """True when this pyinfra run only shows what it would do and then stops: ``--dry``, ``--json`` without
    ``-y`` (pyinfra prints the proposed changes and exits), ``--debug-operations``/``--debug-facts``.

    Code that runs while pyinfra prepares the operations (making DKIM keys and certificates, planning DNS on
    the deploy machine) must write nothing then: it calls ``would_create`` instead. pyinfra 3 keeps these
    flags in its command line only (not in ``state.config``, and the deploy file runs in greenlets that
    cannot see click's context), so they are read back with pyinfra's own parser. Outside the pyinfra
    command (its Python API, the tests): False."""
    prog = Path(sys.argv[0] if sys.argv else "")
    if prog.name != "pyinfra" and prog.parent.name not in ("pyinfra", "pyinfra_cli"):
        return False
    try:
        from pyinfra_cli.cli import cli

        params = cli.make_context("pyinfra", sys.argv[1:], resilient_parsing=True).params
    except Exception:  # noqa: BLE001 - not pyinfra's command line after all
        return False
    return bool(params.get("dry") or params.get("debug_operations") or params.get("debug_facts")
                or (params.get("json_output") and not params.get("yes")))


def would_create(what: str) -> None:
    """A dry run's report of a file it did not make on the deploy machine (the real run makes it), shown
    like pyinfra's ``host.noop`` but without -v."""
    logger.info(f"{host.print_prefix}noop: would create {what}")


def render(src: str, **context) -> str:
    """Render ``files/<src>`` with ``context``. Undefined names are errors, not empty strings."""
    return _jinja.get_template(src).render(**context)


def _mode(value: int | str) -> str:
    return str(value).lstrip("0").rjust(3, "0") if str(value) != "0" else "000"


# ----------------------------------------------------------------------------- pending markers


class PendingMarkers(FactBase):
    """Names of the pending markers on the host (files in /var/lib/mailstead/pending); empty set if none."""

    def command(self):
        return f"ls -1A {PENDING_DIR} 2>/dev/null || true"

    @staticmethod
    def default():
        return set()

    def process(self, output):
        return {line.strip() for line in output if line.strip()}


class _PathExists(FactBase):
    """True when ``path`` exists (any type, a dangling symlink included)."""

    def command(self, path):
        q = shlex.quote(path)
        return f"if [ -e {q} ] || [ -L {q} ]; then echo yes; else echo no; fi"

    def process(self, output):
        return output[-1].strip() == "yes" if output else False


def _markers(restarts: str | Iterable[str] | None) -> list[str]:
    if restarts is None:
        return []
    names = [restarts] if isinstance(restarts, str) else list(restarts)
    for n in names:
        if not _MARKER_RE.match(n):
            raise ValueError(f"bad pending marker name {n!r} (use a service name such as 'dovecot')")
    return list(dict.fromkeys(names))


def marker_path(name: str) -> str:
    """Path of the pending marker ``name`` on the host."""
    return f"{PENDING_DIR}/{_markers(name)[0]}"


def _prepare_state_dirs() -> str:
    """Shell: make /var/lib/mailstead (root, not writable by others) with staging/ and pending/ (0700 root),
    refusing symlinks in their place. Idempotent; runs as root (the op's own _sudo etc. apply)."""
    dirs = " ".join(shlex.quote(d) for d in (STATE_DIR, STAGING_DIR, PENDING_DIR))
    return (
        f"umask 077; for d in {dirs}; do "
        "if [ -L \"$d\" ]; then echo \"mailstead: $d is a symlink; refusing to stage files there\" >&2; exit 1; fi; "
        "mkdir -p \"$d\" || exit 1; done; "
        f"chown root:root {dirs} && chmod go-w {shlex.quote(STATE_DIR)}"
        f" && chmod 700 {shlex.quote(STAGING_DIR)} {shlex.quote(PENDING_DIR)}"
    )


def _write_markers(markers: Sequence[str]) -> str:
    """Shell prefix that writes the markers (ends with ' && ' when there are any)."""
    if not markers:
        return ""
    paths = " ".join(shlex.quote(marker_path(m)) for m in markers)
    return f"umask 077 && mkdir -p {shlex.quote(PENDING_DIR)} && touch {paths} && "


def _escalated() -> bool:
    args = host.current_op_global_arguments or {}
    return any(args.get(a) for a in _ESCALATION_ARGS)


# ----------------------------------------------------------------------------- operations


def checked_file(dest: str, **kwargs):
    """Install ``dest`` validated first (``_checked_file`` below: the operation and its arguments). This call,
    made while the deploy file runs, announces the facts the operation's body will read (the file's stat and
    SHA-1, its directory, the pending markers), so that a run reads those of all its files in one command
    (tasks/factcache.py)."""
    plan(host, File, path=dest)
    plan(host, Sha1File, path=dest)
    plan(host, Directory, path=str(PurePosixPath(dest).parent))
    if kwargs.get("restarts"):
        plan(host, PendingMarkers)
    return _checked_file(dest=dest, **kwargs)


@operation()
def _checked_file(
    dest: str,
    src: str | None = None,
    context: dict | None = None,
    content: str | bytes | None = None,
    check: str | None = None,
    mode: int | str = "644",
    user: str = "root",
    group: str = "root",
    restarts: str | Sequence[str] | None = None,
    secret: bool = True,
):
    """Install ``dest`` from a template (``src`` + ``context``) or from ``content``, validated first.

    + check: shell command run on the staged copy before it goes live; ``{staged}`` is replaced by the
      staged path (e.g. ``doveconf -n -c {staged}``). A non-zero exit fails the deploy; the live file stays.
    + restarts: pending marker name(s) (usually the service, e.g. ``"dovecot"``) written in the same shell
      command that moves the new file into place (and with an owner/mode fix); pair it with
      ``restart_if("dovecot", ...)`` (or ``run_pending``), which honours the marker even when a later run
      sees no change because the run that changed the file was interrupted before the restart.
    + secret: the content may hold a secret (the default): ``pyinfra --diff`` only says that the file will be
      created or modified, "content hidden", and never reads the live file. ``secret=False`` (a file that
      holds no secret: a daemon's configuration, a table without hashes, a certificate) shows the unified
      diff against the live file, as pyinfra's own ``files.put``/``files.template`` do.
    Reports no change when the live file already has this content, owner and mode.
    The content is printed only with ``--diff`` and ``secret=False``, and never readable by anyone but root
    before it has its owner and mode: it is uploaded into /var/lib/mailstead/staging (0700 root, made here if
    missing), chowned/chmodded there, moved next to ``dest`` as ``<dest>.mailstead-new`` for the check (same
    directory, so the final ``mv`` is an atomic rename), then moved onto ``dest``.
    """
    if content is None:
        if src is None:
            raise ValueError("checked_file needs src (a template under files/) or content")
        content = render(src, **(context or {}))
    data = content.encode() if isinstance(content, str) else content
    want_mode = _mode(mode)
    markers = _markers(restarts)

    current = host.get_fact(File, path=dest)
    same_content = bool(current) and host.get_fact(Sha1File, path=dest) == hashlib.sha1(data).hexdigest()
    if same_content:
        fixes = []
        if (current.get("user"), current.get("group")) != (user, group):
            fixes.append(f"chown {user}:{group} {shlex.quote(dest)}")
        if _mode(current.get("mode", "")) != want_mode:
            fixes.append(f"chmod {want_mode} {shlex.quote(dest)}")
        if not fixes:
            host.noop(f"{dest} is up to date")
            return
        _log_owner_mode_diff(current, user, group, want_mode)
        yield _write_markers(markers) + " && ".join(fixes)
        return

    _log_content_diff(dest, data, exists=bool(current), secret=secret)
    staged = dest + STAGED_SUFFIX
    upload = f"{STAGING_DIR}/{hashlib.sha1(dest.encode()).hexdigest()[:16]}-{PurePosixPath(dest).name}"
    q_staged, q_dest, q_upload = shlex.quote(staged), shlex.quote(dest), shlex.quote(upload)

    yield f"{_prepare_state_dirs()} && rm -f {q_upload}"
    if _escalated():
        # the login user's own upload, before root copies it into the staging directory
        yield StringCommand(
            f"umask 077 && mkdir -p {LOGIN_UPLOAD_DIR} && chmod 700 {LOGIN_UPLOAD_DIR}",
            _sudo=False, _su_user=None, _doas=False, _dzdo=False,
        )
        temp = f"{LOGIN_UPLOAD_DIR}/{PurePosixPath(upload).name}"
    else:
        temp = None  # the upload goes straight to its path in the 0700 staging directory
    yield FileUploadCommand(BytesIO(data), upload, remote_temp_filename=temp)
    yield (f"chown {user}:{group} {q_upload} && chmod {want_mode} {q_upload}"
           f" && mv -f {q_upload} {q_staged}")
    if check:
        command = check.replace("{staged}", q_staged)
        yield StringCommand(
            f"( {command} ) || {{ rc=$?; rm -f {q_staged}; "
            f"echo {shlex.quote(f'mailstead: the new {dest} failed its check; the live file is unchanged')} >&2; "
            "exit $rc; }"
        )
    # the marker first: interrupted between the two, the next run restarts once too often, never too rarely
    yield _write_markers(markers) + f"mv -f {q_staged} {q_dest}"


checked_file._inner = _checked_file._inner  # the operation's body (tests/unit run it without pyinfra)


def _log_content_diff(dest: str, data: bytes, exists: bool, secret: bool) -> None:
    """With ``pyinfra --diff``: what checked_file is about to write, the way files.put shows it (pyinfra's
    own ``generate_color_diff`` against the live file read with the ``FileContents`` fact). A secret file
    only gets its verb and "content hidden": neither the new nor the live content is read or printed."""
    if not state.config.DIFF:
        return
    verb = "modify" if exists else "create"
    if secret:
        host.log(f"Will {verb} {format_text(dest, bold=True)} (content hidden: it may hold a secret)", logger.info)
        logger.info("")
        return
    host.log(f"Will {verb} {format_text(dest, bold=True)}", logger.info)
    try:
        desired_lines = data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        logger.info("  (binary content not shown)")
        logger.info("")
        return
    current_lines = []
    if exists:
        current_lines = [line + "\n" for line in host.get_fact(FileContents, path=dest) or []]
    for line in generate_color_diff(current_lines, desired_lines):
        logger.info("  %s", line)
    logger.info("")


def _log_owner_mode_diff(current: dict, user: str, group: str, want_mode: str) -> None:
    """With ``pyinfra --diff``: an owner or mode fix of an up-to-date file, as files.put shows it."""
    if not state.config.DIFF:
        return
    have_mode = _mode(current.get("mode", ""))
    if have_mode != want_mode:
        logger.info("mode %s", format_text(have_mode, "red"))
        logger.info("mode %s", format_text(want_mode, "green"))
    have = (current.get("user"), current.get("group"))
    if have != (user, group):
        logger.info("chown %s:%s", format_text(str(have[0]), "red"), format_text(str(have[1]), "red"))
        logger.info("chown %s:%s", format_text(user, "green"), format_text(group, "green"))


def absent_file(path: str, **kwargs):
    """Remove ``path`` (``_absent_file`` below); announces the fact its body reads (tasks/factcache.py)."""
    plan(host, _PathExists, path=path)
    return _absent_file(path=path, **kwargs)


@operation()
def _absent_file(path: str, restarts: str | Sequence[str] | None = None):
    """Remove ``path`` (a file or a symlink); with ``restarts``, write those pending markers in the same
    command, before the removal. No change when the path does not exist."""
    markers = _markers(restarts)
    if not host.get_fact(_PathExists, path=path):
        host.noop(f"{path} does not exist")
        return
    yield _write_markers(markers) + f"rm -f {shlex.quote(path)}"


absent_file._inner = _absent_file._inner


@operation()
def mark_pending(markers: str | Sequence[str], ops: Sequence = ()):
    """Write pending markers when one of ``ops`` changed something. For operations that cannot write the
    marker themselves (apt.packages, files.put, ...): put it right after them, so that an interrupted run
    leaves the marker behind. (``checked_file``/``absent_file`` with ``restarts=`` need no such step.)"""
    names = _markers(markers)
    if not _ops_changed(ops):
        host.noop("nothing changed")
        return
    yield _write_markers(names) + "true"


def _ops_changed(ops: Iterable) -> bool:
    ops = [op for op in ops if op is not None]
    if state.is_executing:
        return any(op.did_change() for op in ops)
    return any(op.will_change for op in ops)  # prepare (change detection): what the ops are about to do


@operation()
def run_pending(marker: str, command: str, ops: Sequence = (), clears: Sequence[str] = ()):
    """Run ``command`` when one of ``ops`` changed or the pending marker ``marker`` exists (read with a fact
    when the operation runs), then remove ``marker`` (and ``clears``) — only if ``command`` succeeded, in the
    same shell command. No change (and no command) otherwise."""
    names = _markers([marker, *clears])
    pending = marker in host.get_fact(PendingMarkers)
    if not (pending or _ops_changed(ops)):
        host.noop(f"nothing pending for {marker}")
        return
    paths = " ".join(shlex.quote(marker_path(n)) for n in names)
    yield f"{command} && rm -f {paths}"


def restart_if(service: str, *ops, reload: bool = False, clears: Sequence[str] = (), marker: str | None = None,
               **kwargs):
    """Restart (or reload) ``service`` when one of ``ops`` changed something or its pending marker exists.

    The marker (default: the service's name) is what ``checked_file(..., restarts=<service>)``,
    ``absent_file(..., restarts=...)`` and ``mark_pending(<service>, ops)`` write; it is removed in the same
    command as the restart, after it succeeded. ``clears``: other markers the restart makes moot (e.g. a
    cache flush). A service that is not running is not started here (``systemctl try-restart`` /
    ``try-reload-or-restart``: it reads the new file when it starts); its marker is removed all the same.
    Usage (a task module)::

        conf = checked_file(name="x.conf", dest="/etc/x.conf", src="x/x.conf.j2", check="x -t {staged}",
                            restarts="x")
        enable_and_start("x")
        restart_if("x", conf, packages)            # packages: ops that cannot write the marker themselves

    Returns the operation (``.did_change()``: the service was restarted/reloaded in this run).
    """
    verb = "try-reload-or-restart" if reload else "try-restart"
    kwargs.setdefault("name", f"{'Reload' if reload else 'Restart'} {service} after a configuration change")
    return run_pending(
        marker=marker or service,
        command=f"systemctl {verb} {shlex.quote(service)}",
        ops=tuple(ops),
        clears=tuple(clears),
        **kwargs,
    )


def put_file(dest: str, **kwargs):
    """pyinfra's ``files.put`` (a file that needs no check: a helper program, a unit), announcing the facts it
    reads (tasks/factcache.py)."""
    for fact in (File, Sha1File, Directory):
        plan(host, fact, path=dest)
    return files.put(dest=dest, **kwargs)


def ensure_directory(path: str, **kwargs):
    """pyinfra's ``files.directory``, announcing the fact it reads (tasks/factcache.py)."""
    plan(host, Directory, path=path)
    return files.directory(path=path, **kwargs)


def enable_and_start(service: str):
    """Make sure ``service`` is enabled and running (no change when it already is)."""
    unit = service if "." in service else f"{service}.service"  # as systemd.service names it
    for fact in (SystemdStatus, SystemdEnabled):
        plan(host, fact, user_mode=False, machine=None, user_name=None, services=[unit])
    return systemd.service(
        name=f"Enable and start {service}",
        service=service,
        running=True,
        enabled=True,
    )


def systemd_units(units: dict[str, str], restarts: str | Sequence[str] = ()) -> list:
    """Install unit files ``{name: content}`` under /etc/systemd/system (no secret in them), reload systemd when
    one changed (pending marker, so an interrupted run still reloads), and write the ``restarts`` markers of
    the services that must restart for them. Returns the file operations."""
    names = [DAEMON_RELOAD, *([restarts] if isinstance(restarts, str) else restarts)]
    ops = [checked_file(name=f"systemd unit {name}", dest=f"/etc/systemd/system/{name}", content=content,
                        restarts=names, secret=False) for name, content in units.items()]
    run_pending(name="systemd daemon-reload", marker=DAEMON_RELOAD, command="systemctl daemon-reload", ops=ops)
    return ops

