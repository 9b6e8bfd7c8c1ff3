"""Whether Debian fixed a security hole in the OpenSMTPD version mailstead builds. mailstead builds the upstream
tarball, so Debian's patches are not in it: a fix shows up as a newer Debian revision of the *same* upstream
version, either in a security suite (`<suite>-security`, revisions like `7.9.0p0-1+deb14u1`) or in
`opensmtpd.debian_suite` itself (e.g. `7.9.0p0-2` in testing). Its debian/changelog names the CVEs.

Pure logic here (Sources stanzas, Debian version order, changelog entries, the finding); releases.py asks the
host for the indexes and the changelog."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from debian.changelog import Changelog
from debian.deb822 import Deb822
from debian.debian_support import Version

from mailstead.check.findings import Finding, ok, warning

CVE_RE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")
NO_SECURITY_SUITE = {"sid", "unstable", "experimental", "rc-buggy"}


@dataclass(frozen=True)
class SourcePackage:
    """One opensmtpd stanza of a suite's Sources index, with where its Debian tarball lives."""

    suite: str
    version: str
    uri: str = ""
    directory: str = ""
    debian_tarball: str = ""
    sha256: str = ""

    @property
    def security(self) -> bool:
        return self.suite.endswith("-security")

    @property
    def tarball_url(self) -> str:
        return f"{self.uri.rstrip('/')}/{self.directory}/{self.debian_tarball}"


def parse_stanzas(text: str) -> list[Deb822]:
    """The deb822 paragraphs of a Sources index (python-debian's parser)."""
    return list(Deb822.iter_paragraphs(text.splitlines()))


def parse_host_output(text: str) -> tuple[dict[str, list[SourcePackage]], set[str]]:
    """The release script's output: `== suite NAME URI` then that suite's opensmtpd stanzas; `== missing NAME`
    when the suite's index could not be read. Returns ({suite: packages}, suites that could not be read)."""
    found: dict[str, list[SourcePackage]] = {}
    missing: set[str] = set()
    for block in re.split(r"^== ", text, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        words = head.split()
        if words[:1] == ["missing"] and len(words) > 1:
            missing.add(words[1])
            continue
        if words[:1] != ["suite"] or len(words) < 2:
            continue
        suite, uri = words[1], (words[2] if len(words) > 2 else "")
        pkgs = found.setdefault(suite, [])
        for st in parse_stanzas(body):
            if st.get("Package") != "opensmtpd" or "Version" not in st:
                continue
            tarball, sha = "", ""
            for line in st.get("Checksums-Sha256", "").splitlines():
                parts = line.split()
                if len(parts) == 3 and re.search(r"\.debian\.tar\.\w+$", parts[2]):
                    sha, tarball = parts[0], parts[2]
            pkgs.append(SourcePackage(suite, st["Version"], uri, st.get("Directory", ""), tarball, sha))
    return found, missing


def split_version(v: str) -> tuple[int, str, str]:
    """(epoch, upstream version, Debian revision) of a Debian version."""
    version = Version(v)
    return int(version.epoch or 0), version.upstream_version or "", version.debian_revision or ""


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as dpkg --compare-versions orders Debian versions (python-debian's Version)."""
    va, vb = Version(a), Version(b)
    return (va > vb) - (va < vb)


def newest(pkgs: Iterable[SourcePackage]) -> SourcePackage | None:
    return max(pkgs, key=lambda p: Version(p.version), default=None)


def candidates(found: dict[str, list[SourcePackage]], pinned: str) -> list[SourcePackage]:
    """The Debian packages of the pinned upstream version, in every suite read."""
    return [p for pkgs in found.values() for p in pkgs if split_version(p.version)[1] == pinned]


def needs_changelog(p: SourcePackage) -> bool:
    """A first upload of an upstream version (revision 1, or 0.1 for a non-maintainer's) only imports the
    tarball: nothing of it is missing from what mailstead builds. Anything later may carry patches."""
    return p.security or split_version(p.version)[2] not in ("1", "0.1", "")


def changelog_entries(text: str) -> list[tuple[str, str]]:
    """(version, text) of each debian/changelog entry, newest first (python-debian's Changelog)."""
    return [(str(block.version), "\n".join(block.changes())) for block in Changelog(text, strict=False)]


def patched_cves(changelog: str, pinned: str) -> list[str]:
    """CVEs named by the entries of the pinned upstream version after its first (the import of the tarball,
    which the upstream tarball contains), in the order they first appear."""
    mine = [(v, body) for v, body in changelog_entries(changelog) if split_version(v)[1] == pinned]
    seen: list[str] = []
    for _, body in mine[:-1]:
        for cve in CVE_RE.findall(body):
            if cve not in seen:
                seen.append(cve)
    return seen


def security_finding(fqdn: str, pinned: str, suites: list[str], found: dict[str, list[SourcePackage]],
                     missing: set[str], changelog: str | None) -> Finding:
    """ok / warning about Debian fixes of the pinned OpenSMTPD that the upstream tarball lacks."""
    check = "opensmtpd-security"
    unread = [s for s in suites if s in missing]
    best = newest(candidates(found, pinned))
    cves = patched_cves(changelog, pinned) if changelog and best else []
    where = ", ".join(s for s in suites if s not in missing)
    if best and (best.security or cves):
        named = f" naming {', '.join(cves)}" if cves else ""
        return warning(check, fqdn,
                       f"Debian patched OpenSMTPD {pinned}: opensmtpd {best.version} in {best.suite}{named}; "
                       f"mailstead builds the upstream {pinned} tarball, without Debian's patches",
                       "read the CVEs in Debian's security tracker; take the OpenSMTPD release that fixes them "
                       "as soon as it exists (opensmtpd = {'version': ...}, then roll it out), or until then "
                       "use Debian's patched package if its version is enough (opensmtpd = {'source': "
                       "'package'} when the fix is in the host's own release)")
    if best and needs_changelog(best) and changelog is None:
        return warning(check, fqdn, f"opensmtpd {best.version} in {best.suite} may carry patches, but its "
                       "debian/changelog could not be read", "run check again; if it persists, read the "
                       f"changelog of opensmtpd {best.version} by hand")
    if unread and not where:
        return warning(check, fqdn, f"could not read opensmtpd in {', '.join(unread)}'s Sources indexes",
                       "check the host's apt configuration (apt-get update)")
    note = f"; could not read {', '.join(unread)}" if unread else ""
    latest = f" (Debian's newest revision: {best.version})" if best else ""
    return ok(check, fqdn, f"no Debian security fix for OpenSMTPD {pinned} in {where}{latest}{note}")
