"""Whether a newer OpenSMTPD than the pinned one exists: asked on the mail host (over SSH) from the signed Sources
index of `opensmtpd.debian_suite` on the archive the host's apt uses — the same index the build reads."""

from __future__ import annotations

import re
import subprocess
from typing import Iterable

from mailstead.check.findings import Context, Finding, Target, ok, warning

SCRIPT = r"""
set -e
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
uri=$(apt-get indextargets --format '$(REPO_URI)' 'Identifier: Packages' | grep -v -- '-security' | sort -u | head -n1)
printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\nCheck-Valid-Until: no\n' "$uri" "$1" > "$tmp/src.sources"
mkdir -p "$tmp/lists/partial"
a() { apt-get -o "Dir::Etc::SourceList=$tmp/src.sources" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$tmp/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "$@"; }
a update >/dev/null 2>&1
a source --print-uris opensmtpd 2>/dev/null | sed -n "s/.*opensmtpd_\([^ ']*\)\.dsc.*/\1/p"
"""


def upstream_part(debian_version: str) -> str:
    """'7.9.0p0-1' -> '7.9.0p0' (epoch and Debian revision dropped)."""
    v = debian_version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def version_key(v: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def newer_release(t: Target, versions: list[str]) -> Iterable[Finding]:
    pinned = t.settings.opensmtpd.version
    suite = t.settings.opensmtpd.debian_suite
    if not versions:
        yield warning("opensmtpd", t.fqdn, f"could not read opensmtpd's versions in {suite}'s Sources index",
                      "check the host's apt configuration (apt-get update)")
        return
    newest = max((upstream_part(v) for v in versions), key=version_key)
    if version_key(newest) > version_key(pinned):
        yield warning("opensmtpd", t.fqdn, f"OpenSMTPD {newest} is in {suite}; {pinned} is pinned",
                      f"read its release notes, then set opensmtpd = {{'version': '{newest}'}} and roll it out")
    else:
        yield ok("opensmtpd", t.fqdn, f"{pinned} is the newest OpenSMTPD in {suite}")


def opensmtpd_release(ctx: Context, t: Target) -> Iterable[Finding]:
    if t.settings.opensmtpd.source != "debian-archive" or not t.ssh:
        yield ok("opensmtpd", t.fqdn, f"source {t.settings.opensmtpd.source}: no release check")
        return
    proc = subprocess.run([*t.ssh, "sh", "-s", "--", t.settings.opensmtpd.debian_suite], input=SCRIPT,
                          capture_output=True, text=True, timeout=ctx.timeout * 12)
    yield from newer_release(t, [line.strip() for line in proc.stdout.splitlines() if line.strip()])
