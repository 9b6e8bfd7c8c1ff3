"""Problems in settings: one Issue per bad value (file, field, message with the fix), SettingsError,
and how values are shown in messages (escaped, shortened, secrets never)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pydantic import BaseModel

try:  # A clean one-paragraph message from the pyinfra CLI, no traceback (see SettingsError).
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra_cli.exceptions import CliError
except ImportError:  # pragma: no cover - pyinfra is a hard dependency
    PyinfraError = Exception  # type: ignore[misc,assignment]
    CliError = Exception  # type: ignore[misc,assignment]


# C0 controls, DEL, C1 controls (NEL U+0085 among them), LINE and PARAGRAPH SEPARATOR: never in a setting.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# --------------------------------------------------------------------------------------------
# Errors


@dataclass
class Issue:
    """One problem in the settings: where it came from, which field, what is wrong, the fix."""

    source: str  # 'group_data/production.py', 'host data of mx1.example.org in inventory.py', ...
    field: str  # 'users[1].password'
    message: str  # "a plaintext password is not allowed; write password_hash = ..."
    hosts: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.source}: {self.field}: {self.message}" if self.field else f"{self.source}: {self.message}"
        if self.hosts:
            text += f" (host{'s' if len(self.hosts) > 1 else ''} {', '.join(self.hosts)})"
        return one_line(text)


class SettingsError(CliError, PyinfraError):
    """Invalid settings. A pyinfra CLI error: printed as one clean message, exit status 1.

    It is both a ``PyinfraError`` (so pyinfra's ``exec_file`` re-raises it as-is when inventory.py
    raises it instead of wrapping it with a traceback) and a ``CliError`` (a click exception, so
    the CLI prints ``show()`` and exits non-zero before it connects to any host).
    """

    exit_code = 1

    def __init__(self, issues: list[Issue] | str, before_connect: bool = False):
        if isinstance(issues, str):
            issues = [Issue("settings", "", issues)]
        merged: dict[tuple[str, str, str], Issue] = {}
        for issue in issues:
            key = (issue.source, issue.field, issue.message)
            if key in merged:
                for h in issue.hosts:
                    if h not in merged[key].hosts:
                        merged[key].hosts.append(h)
            else:
                merged[key] = Issue(issue.source, issue.field, issue.message, list(issue.hosts))
        self.issues = list(merged.values())
        count = len(self.issues)
        head = f"{count} problem{'s' if count > 1 else ''}"
        head += " (nothing was deployed, no host was contacted):" if before_connect else ":"
        message = head + "".join(f"\n  {i.line()}" for i in self.issues)
        super().__init__(message)
        self.message = message
        self.args = (message,)

    def __str__(self) -> str:
        return self.message

    def show(self, file=None) -> None:  # click calls this, then exits with exit_code
        import sys

        import click

        click.echo(
            f"--> {click.style('Invalid mailstead settings', 'red', bold=True)}: {self.message}",
            file=file or sys.stderr,
        )


def one_line(text: str) -> str:
    """`text` with any control character escaped the way repr() does ('\\n'): one message is one line."""
    return _CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], text)


def _show(value: Any, limit: int = 70) -> str:
    """A value for a message: repr() (so a newline shows as \\n), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_url(value: Any, limit: int = 70) -> str:
    """Like _show, with a user:password@ part of a URL replaced by ***@ (a credential is never echoed)."""
    if isinstance(value, str) and "://" in value:
        scheme, _, rest = value.partition("://")
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            value = f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"
    return _show(value, limit)


def _py(value: Any) -> str:
    """A value as the user would write it in a group_data file."""
    if isinstance(value, (IPv4Address, IPv6Address)):
        return repr(str(value))
    if isinstance(value, BaseModel):
        return repr(value.model_dump(exclude_defaults=True))
    return repr(value)
