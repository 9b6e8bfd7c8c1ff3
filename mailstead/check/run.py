"""Running the checks: every check of an environment, for every domain and host it concerns; a check that
crashes becomes a problem finding of its own."""

from __future__ import annotations

from typing import Any

from mailstead.check import backupcheck, dnscheck, hostcheck, netcheck, releases
from mailstead.check.findings import Check, Context, Finding, problem


def _guarded(fn: Check, name: str, subject: str, *args: Any) -> list[Finding]:
    """A check that crashes is a problem of its own, never a traceback that hides the other findings."""
    try:
        return list(fn(*args))
    except Exception as exc:  # noqa: BLE001 - reported, with what to do
        return [problem(name, subject, f"the check itself failed: {type(exc).__name__}: {exc}",
                        "run it again; if it keeps failing, report it with this line")]


def run_checks(ctx: Context) -> list[Finding]:
    """Every check of the environment: per domain, per host, per mail host, and over SSH per host."""
    out: list[Finding] = []
    out += _guarded(dnscheck.records, "dns", ctx.env.environment, ctx)
    for domain in ctx.env.domains:
        for name, fn in (("mta-sts", dnscheck.mta_sts),):
            out += _guarded(fn, name, domain, ctx, domain)
    for t in ctx.targets:
        for name, fn in (("ptr", dnscheck.ptr), ("dnsbl", dnscheck.dnsbl)):
            out += _guarded(fn, name, t.fqdn, ctx, t)
    for t in ctx.mail_targets:
        for name, fn in (("tls", netcheck.tls_ports), ("relay", netcheck.open_relay)):
            out += _guarded(fn, name, t.fqdn, ctx, t)
    for t in ctx.trap_targets:
        out += _guarded(netcheck.trap, "trap", t.fqdn, ctx, t)
    if ctx.ssh:
        for t in ctx.targets:
            out += _guarded(hostcheck.over_ssh, "ssh", t.fqdn, ctx, t)
        for t in ctx.mail_targets:
            out += _guarded(releases.opensmtpd_release, "opensmtpd", t.fqdn, ctx, t)
            out += _guarded(backupcheck.backup_freshness, "backup", t.fqdn, ctx, t)
    return out
