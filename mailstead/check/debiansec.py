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

from mailstead.check.findings import Finding, ok, warning

CVE_RE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")
_HEADER_RE = re.compile(r"^(\S+) \(([^)\s]+)\) [^;]*;", re.M)
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


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs (continuation lines joined with newlines)."""
    out: list[dict[str, str]] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            out.append(fields)
    return out


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


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256 if c else 0


def _compare_part(a: str, b: str) -> int:
    """dpkg's comparison of an upstream version or a Debian revision."""
    while a or b:
        na = re.match(r"[^\d]*", a).group()
        nb = re.match(r"[^\d]*", b).group()
        a, b = a[len(na):], b[len(nb):]
        for i in range(max(len(na), len(nb))):
            ca, cb = _order(na[i] if i < len(na) else ""), _order(nb[i] if i < len(nb) else "")
            if ca != cb:
                return -1 if ca < cb else 1
        da = re.match(r"\d*", a).group()
        db = re.match(r"\d*", b).group()
        a, b = a[len(da):], b[len(db):]
        if int(da or 0) != int(db or 0):
            return -1 if int(da or 0) < int(db or 0) else 1
    return 0


def split_version(v: str) -> tuple[int, str, str]:
    epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as dpkg --compare-versions orders Debian versions."""
    ea, ua, ra = split_version(a)
    eb, ub, rb = split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def newest(pkgs: Iterable[SourcePackage]) -> SourcePackage | None:
    best = None
    for p in pkgs:
        if best is None or compare_versions(p.version, best.version) > 0:
            best = p
    return best


def candidates(found: dict[str, list[SourcePackage]], pinned: str) -> list[SourcePackage]:
    """The Debian packages of the pinned upstream version, in every suite read."""
    return [p for pkgs in found.values() for p in pkgs if split_version(p.version)[1] == pinned]


def needs_changelog(p: SourcePackage) -> bool:
    """A first upload of an upstream version (revision 1, or 0.1 for a non-maintainer's) only imports the
    tarball: nothing of it is missing from what mailstead builds. Anything later may carry patches."""
    return p.security or split_version(p.version)[2] not in ("1", "0.1", "")


def changelog_entries(text: str) -> list[tuple[str, str]]:
    """(version, text) of each debian/changelog entry, newest first."""
    heads = list(_HEADER_RE.finditer(text))
    return [(m.group(2), text[m.end():heads[i + 1].start() if i + 1 < len(heads) else len(text)])
            for i, m in enumerate(heads)]


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
