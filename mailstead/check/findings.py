"""What a check returns (Finding), what it gets (Context, Target) and how the checks are run and shown."""

from __future__ import annotations

import json
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

OK, WARNING, PROBLEM = "ok", "warning", "problem"
ORDER = {OK: 0, WARNING: 1, PROBLEM: 2}


@dataclass(frozen=True)
class Finding:
    """One line of the report: which check, about what (a host, a domain, a record), its status, what was
    seen and, unless ok, what to do."""

    check: str
    subject: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.upper():8} {self.check:12} {self.subject}: {self.detail}"
        return text + (f"\n         -> {self.fix}" if self.fix and self.status != OK else "")


def ok(check: str, subject: str, detail: str) -> Finding:
    return Finding(check, subject, OK, detail)


def warning(check: str, subject: str, detail: str, fix: str) -> Finding:
    return Finding(check, subject, WARNING, detail, fix)


def problem(check: str, subject: str, detail: str, fix: str) -> Finding:
    return Finding(check, subject, PROBLEM, detail, fix)


@dataclass(frozen=True)
class Target:
    """One host of the environment: its settings and how the deploy machine reaches it over SSH (the argv
    prefix of `ssh ... host`, built from the inventory's ssh_* host data)."""

    settings: Any
    ssh: tuple[str, ...] = ()

    @property
    def fqdn(self) -> str:
        return str(self.settings.fqdn)


@dataclass
class Context:
    """What every check gets: the environment (EnvironmentSettings), its hosts, the TLS trust and the
    DNS resolver of the deploy machine (dnspython's, from /etc/resolv.conf), and the timeouts."""

    env: Any
    targets: list[Target]
    ca_files: list[str] = field(default_factory=list)
    ssh: bool = True
    timeout: float = 10.0
    resolver: Any = None

    def __post_init__(self) -> None:
        if self.resolver is None:
            import dns.resolver

            self.resolver = dns.resolver.Resolver()
            self.resolver.lifetime = self.timeout

    def tls_context(self) -> ssl.SSLContext:
        """System CAs plus the extra ones (the private CA of tls.mode 'lab', --ca-file)."""
        ctx = ssl.create_default_context()
        for f in self.ca_files:
            if Path(f).is_file():
                ctx.load_verify_locations(cafile=f)
        return ctx

    @property
    def mail_targets(self) -> list[Target]:
        return [t for t in self.targets if t.settings.is_mailserver]

    @property
    def trap_targets(self) -> list[Target]:
        return [t for t in self.targets if t.settings.is_spamtrap]


Check = Callable[..., Iterable[Finding]]


def worst(findings: Iterable[Finding]) -> str:
    return max((f.status for f in findings), key=ORDER.__getitem__, default=OK)


def render(findings: list[Finding], as_json: bool = False) -> str:
    if as_json:
        return json.dumps({"status": worst(findings), "findings": [asdict(f) for f in findings]}, indent=1)
    counts = {s: sum(1 for f in findings if f.status == s) for s in (OK, WARNING, PROBLEM)}
    lines = [f.line() for f in findings]
    lines.append(f"{counts[OK]} ok, {counts[WARNING]} warning(s), {counts[PROBLEM]} problem(s)")
    return "\n".join(lines)
