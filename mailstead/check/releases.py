"""Whether a newer OpenSMTPD than the pinned one exists, and whether Debian patched a security hole in the
pinned one: asked on the mail host (over SSH) from the signed Sources indexes of `opensmtpd.debian_suite`, its
security suite and trixie-security on the archives the host's apt uses (the same index the build reads)."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import tarfile
from typing import Iterable

from debian.debian_support import Version

from mailstead.check import debiansec
from mailstead.check.findings import Context, Finding, Target, ok, warning

HOST_RELEASE = "trixie"  # the Debian release mailstead deploys on

SCRIPT = r"""
set -e
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
targets=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' | sort -u)
main=$(echo "$targets" | grep -v -- '-security' | head -n1 | cut -d' ' -f1)
sec=$(echo "$targets" | grep -- '-security' | head -n1 | cut -d' ' -f1)
uri() { case $1 in *-security) echo "$sec";; *) echo "$main";; esac; }
for s in "$@"; do
  [ -n "$(uri "$s")" ] || continue
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\nCheck-Valid-Until: no\n\n' "$(uri "$s")" "$s"
done > "$tmp/src.sources"
mkdir -p "$tmp/lists/partial"
apt-get -o "Dir::Etc::SourceList=$tmp/src.sources" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$tmp/lists" \
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= update >/dev/null 2>&1 || true
for s in "$@"; do
  f=$(ls "$tmp/lists/"*"_dists_${s}_main_source_Sources" 2>/dev/null | head -n1 || true)
  if [ -n "$f" ]; then echo "== suite $s $(uri "$s")"; awk -v RS= -v ORS='\n\n' '/^Package: opensmtpd\n/' "$f"
  elif ls "$tmp/lists/"*"_dists_${s}_InRelease" >/dev/null 2>&1; then echo "== suite $s $(uri "$s")"
  else echo "== missing $s"; fi
done
"""
# Fetches one Debian tarball through the host's apt (its proxy, its archive), checked against the sha256 of the
# signed Sources index, and prints its debian/changelog base64-encoded.
CHANGELOG_SCRIPT = r"""
set -e
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
/usr/lib/apt/apt-helper download-file "$1" "$tmp/debian.tar" "SHA256:$2" >/dev/null
base64 "$tmp/debian.tar"
"""


def upstream_part(debian_version: str) -> str:
    """'1:7.9.0p0-1' -> '7.9.0p0' (epoch and Debian revision dropped)."""
    return Version(debian_version).upstream_version or ""


def newer_release(t: Target, versions: list[str]) -> Iterable[Finding]:
    pinned = t.settings.opensmtpd.version
    suite = t.settings.opensmtpd.debian_suite
    if not versions:
        yield warning("opensmtpd", t.fqdn, f"could not read opensmtpd's versions in {suite}'s Sources index",
                      "check the host's apt configuration (apt-get update)")
        return
    newest = max((upstream_part(v) for v in versions), key=Version)
    if Version(newest) > Version(pinned):
        yield warning("opensmtpd", t.fqdn, f"OpenSMTPD {newest} is in {suite}; {pinned} is pinned",
                      f"read its release notes, then set opensmtpd = {{'version': '{newest}'}} and roll it out")
    else:
        yield ok("opensmtpd", t.fqdn, f"{pinned} is the newest OpenSMTPD in {suite}")


def suites_to_read(debian_suite: str, host_release: str | None = None) -> list[str]:
    """`opensmtpd.debian_suite`, its security suite (none for unstable) and the host's own security suite."""
    out = [debian_suite]
    if debian_suite not in debiansec.NO_SECURITY_SUITE:
        out.append(f"{debian_suite}-security")
    if host_release and f"{host_release}-security" not in out:
        out.append(f"{host_release}-security")
    return out


def debian_changelog(tarball: bytes) -> str | None:
    """debian/changelog out of a Debian source tarball (.debian.tar.xz/.gz/.bz2)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:*") as tar:
            f = tar.extractfile("debian/changelog")
            return f.read().decode("utf-8", "replace") if f else None
    except (tarfile.TarError, KeyError, EOFError, OSError):
        return None


def _fetch_changelog(ctx: Context, t: Target, pkg: debiansec.SourcePackage) -> str | None:
    if not (pkg.uri and pkg.debian_tarball and re.fullmatch(r"[0-9a-f]{64}", pkg.sha256)):
        return None
    proc = subprocess.run([*t.ssh, "sh", "-s", "--", pkg.tarball_url, pkg.sha256], input=CHANGELOG_SCRIPT,
                          capture_output=True, text=True, timeout=ctx.timeout * 12)
    if proc.returncode != 0:
        return None
    try:
        return debian_changelog(base64.b64decode(proc.stdout))
    except ValueError:
        return None


def opensmtpd_release(ctx: Context, t: Target) -> Iterable[Finding]:
    """Two findings from one look at the host's archive: a newer OpenSMTPD release in the suite, and a Debian
    security fix of the pinned version (debiansec)."""
    smtpd = t.settings.opensmtpd
    if smtpd.source != "debian-archive" or not t.ssh:
        yield ok("opensmtpd", t.fqdn, f"source {smtpd.source}: no release check")
        return
    suites = suites_to_read(smtpd.debian_suite, HOST_RELEASE)
    proc = subprocess.run([*t.ssh, "sh", "-s", "--", *suites], input=SCRIPT,
                          capture_output=True, text=True, timeout=ctx.timeout * 12)
    found, missing = debiansec.parse_host_output(proc.stdout)
    yield from newer_release(t, [p.version for p in found.get(smtpd.debian_suite, [])])
    best = debiansec.newest(debiansec.candidates(found, smtpd.version))
    changelog = _fetch_changelog(ctx, t, best) if best and debiansec.needs_changelog(best) else None
    yield debiansec.security_finding(t.fqdn, smtpd.version, suites, found, missing, changelog)
