"""Shared building blocks of every task: render, stage, check, install, activate.

The rule they enforce: a daemon's live configuration is only ever replaced by a file that the daemon's own
checker accepted. ``checked_file`` uploads the new content next to the live file, runs the checker on that
staged copy, and only then moves it into place; a failing check removes the staged copy, fails the deploy
and leaves the running service and its old file untouched.
"""

from __future__ import annotations

import hashlib
import shlex
from io import BytesIO
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.facts.files import File, Sha1File
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

FILES_DIR = Path(__file__).resolve().parent.parent / "files"
STAGED_SUFFIX = ".mailstead-new"

_jinja = Environment(
    loader=FileSystemLoader(str(FILES_DIR)),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def render(src: str, **context) -> str:
    """Render ``files/<src>`` with ``context``. Undefined names are errors, not empty strings."""
    return _jinja.get_template(src).render(**context)


def _mode(value: int | str) -> str:
    return str(value).lstrip("0").rjust(3, "0") if str(value) != "0" else "000"


@operation()
def checked_file(
    dest: str,
    src: str | None = None,
    context: dict | None = None,
    content: str | bytes | None = None,
    check: str | None = None,
    mode: int | str = "644",
    user: str = "root",
    group: str = "root",
):
    """Install ``dest`` from a template (``src`` + ``context``) or from ``content``, validated first.

    + check: shell command run on the staged copy before it goes live; ``{staged}`` is replaced by the
      staged path (e.g. ``doveconf -n -c {staged}``). A non-zero exit fails the deploy; the live file stays.
    Reports no change when the live file already has this content, owner and mode.
    The content is never printed (it may hold secrets).
    """
    if content is None:
        if src is None:
            raise ValueError("checked_file needs src (a template under files/) or content")
        content = render(src, **(context or {}))
    data = content.encode() if isinstance(content, str) else content
    want_mode = _mode(mode)

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
        yield from fixes
        return

    staged = dest + STAGED_SUFFIX
    q_staged, q_dest = shlex.quote(staged), shlex.quote(dest)
    yield FileUploadCommand(BytesIO(data), staged, remote_temp_filename=host.get_temp_filename(staged))
    yield f"chown {user}:{group} {q_staged} && chmod {want_mode} {q_staged}"
    if check:
        command = check.replace("{staged}", q_staged)
        yield StringCommand(
            f"( {command} ) || {{ rc=$?; rm -f {q_staged}; "
            f"echo {shlex.quote(f'mailstead: the new {dest} failed its check; the live file is unchanged')} >&2; "
            "exit $rc; }"
        )
    yield f"mv -f {q_staged} {q_dest}"


def restart_if(service: str, *ops, reload: bool = False):
    """Restart (or reload) ``service`` only when one of ``ops`` changed something."""
    return systemd.service(
        name=f"{'Reload' if reload else 'Restart'} {service} after a configuration change",
        service=service,
        reloaded=reload,
        restarted=not reload,
        _if=any_changed(*ops),
    )


def enable_and_start(service: str):
    """Make sure ``service`` is enabled and running (no change when it already is)."""
    return systemd.service(
        name=f"Enable and start {service}",
        service=service,
        running=True,
        enabled=True,
    )
