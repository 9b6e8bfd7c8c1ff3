"""`check`'s Debian security fix detection for the pinned OpenSMTPD, on real-format data: the release script's
output with the real forky and bookworm stanzas of the Sources index (tests/unit/data/opensmtpd/, captured from
the archive in the lab) and the head of the real debian/changelog of opensmtpd 6.8.0p2-4."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import pytest

from mailstead.check import debiansec, releases
from mailstead.check.findings import OK, WARNING

DATA = Path(__file__).parent / "data" / "opensmtpd"
SOURCES = (DATA / "sources-forky-bookworm.txt").read_text()
CHANGELOG = (DATA / "changelog-6.8.0p2-4.txt").read_text()
# A security upload in the format of the Security Team's uploads (DSA-4611, CVE-2020-7247).
SECURITY_ENTRY = """opensmtpd (6.8.0p2-4+deb12u1) bookworm-security; urgency=high

  * Non-maintainer upload by the Security Team.
  * smtp_mailaddr(): fix local privilege escalation / remote code
    execution (CVE-2020-7247) (Closes: #950121)
  * Fix out of bounds read in mta_io (CVE-2020-8794)

 -- Salvatore Bonaccorso <carnil@debian.org>  Tue, 28 Jan 2020 21:12:18 +0100

"""
SECURITY_STANZA = """== suite bookworm-security http://security.example/debian-security/
Package: opensmtpd
Version: 6.8.0p2-4+deb12u1
Checksums-Sha256:
 %s 1955 opensmtpd_6.8.0p2-4+deb12u1.dsc
 %s 24999 opensmtpd_6.8.0p2-4+deb12u1.debian.tar.xz
Directory: pool/updates/main/o/opensmtpd

""" % ("a" * 64, "b" * 64)


def test_the_real_sources_output_is_read():
    found, missing = debiansec.parse_host_output(SOURCES + "== missing trixie-security\n")
    assert missing == {"trixie-security"}
    [forky] = found["forky"]
    assert forky.version == "7.9.0p0-1" and forky.debian_tarball == "opensmtpd_7.9.0p0-1.debian.tar.xz"
    assert forky.sha256 == "7304137fc8bcab38a7455d8f760c0f56fd7a5acfe69a4a892c44046c0aca91b2"
    assert forky.tarball_url == ("http://archive.example.org/debian/pool/main/o/opensmtpd/"
                                 "opensmtpd_7.9.0p0-1.debian.tar.xz")
    assert [p.version for p in found["bookworm"]] == ["6.8.0p2-4"]


@pytest.mark.parametrize("a,b,result", [
    ("7.9.0p0-1", "7.9.0p0-1+deb13u1", -1),
    ("7.9.0p0-1+deb13u2", "7.9.0p0-1+deb13u10", -1),
    ("6.8.0p1~rc1-1", "6.8.0p1-1", -1),
    ("7.10.1p0-1", "7.9.0p0-3", 1),
    ("1:6.0-1", "7.9.0p0-1", 1),
    ("7.9.0p0-2", "7.9.0p0-2", 0),
])
def test_debian_versions_compare_as_dpkg_does(a, b, result):
    assert debiansec.compare_versions(a, b) == result
    assert debiansec.compare_versions(b, a) == -result


def test_cves_of_the_upstream_import_are_not_missing_from_the_tarball():
    # 6.8.0p2-1 imported the upstream release that fixed CVE-2020-35680/35679: the tarball has those fixes
    assert debiansec.patched_cves(CHANGELOG, "6.8.0p2") == []
    assert debiansec.patched_cves(SECURITY_ENTRY + CHANGELOG, "6.8.0p2") == ["CVE-2020-7247", "CVE-2020-8794"]
    assert debiansec.patched_cves(SECURITY_ENTRY + CHANGELOG, "7.9.0p0") == []


def test_no_fix_is_ok_and_names_what_was_read():
    found, missing = debiansec.parse_host_output(SOURCES + "== suite forky-security http://x/\n")
    f = debiansec.security_finding("mx1.example.org", "7.9.0p0", ["forky", "forky-security"], found, missing, None)
    assert f.status == OK and "forky, forky-security" in f.detail and "7.9.0p0-1" in f.detail


def test_a_security_upload_of_the_pinned_version_is_a_warning_naming_version_and_cves():
    found, missing = debiansec.parse_host_output(SOURCES + SECURITY_STANZA)
    best = debiansec.newest(debiansec.candidates(found, "6.8.0p2"))
    assert best.version == "6.8.0p2-4+deb12u1" and debiansec.needs_changelog(best)
    suites = ["bookworm", "bookworm-security"]
    f = debiansec.security_finding("mx1.example.org", "6.8.0p2", suites, found, missing, SECURITY_ENTRY + CHANGELOG)
    assert f.status == WARNING
    assert "6.8.0p2-4+deb12u1 in bookworm-security" in f.detail and "CVE-2020-7247, CVE-2020-8794" in f.detail
    assert "opensmtpd = {'version'" in f.fix
    # the changelog could not be fetched: still a warning (a security suite carries only fixes)
    f = debiansec.security_finding("mx1.example.org", "6.8.0p2", suites, found, missing, None)
    assert f.status == WARNING and "6.8.0p2-4+deb12u1" in f.detail


def test_a_later_revision_in_the_suite_warns_only_when_its_changelog_names_cves():
    stanza = "== suite bookworm http://x/\nPackage: opensmtpd\nVersion: 6.8.0p2-5\n\n"
    found, missing = debiansec.parse_host_output(stanza)
    entry = SECURITY_ENTRY.replace("6.8.0p2-4+deb12u1) bookworm-security", "6.8.0p2-5) unstable")
    f = debiansec.security_finding("mx", "6.8.0p2", ["bookworm"], found, missing, entry + CHANGELOG)
    assert f.status == WARNING and "CVE-2020-7247" in f.detail
    packaging = "opensmtpd (6.8.0p2-5) unstable; urgency=medium\n\n  * Bump standards\n\n -- A <a@b>  Mon\n\n"
    f = debiansec.security_finding("mx", "6.8.0p2", ["bookworm"], found, missing, packaging + CHANGELOG)
    assert f.status == OK
    f = debiansec.security_finding("mx", "6.8.0p2", ["bookworm"], found, missing, None)
    assert f.status == WARNING and "could not be read" in f.detail


def test_unreadable_indexes_are_a_warning():
    f = debiansec.security_finding("mx", "7.9.0p0", ["forky", "forky-security"], {}, {"forky", "forky-security"},
                                   None)
    assert f.status == WARNING and "apt-get update" in f.fix


def test_the_changelog_comes_out_of_a_debian_tarball():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        data = CHANGELOG.encode()
        info = tarfile.TarInfo("debian/changelog")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert releases.debian_changelog(base64.b64decode(base64.b64encode(buf.getvalue()))) == CHANGELOG
    assert releases.debian_changelog(b"not a tarball") is None


def test_which_suites_are_read():
    assert releases.suites_to_read("forky", "trixie") == ["forky", "forky-security", "trixie-security"]
    assert releases.suites_to_read("trixie", "trixie") == ["trixie", "trixie-security"]
    assert releases.suites_to_read("sid", "trixie") == ["sid", "trixie-security"]
