"""opensmtpd.signify_pubkey and imap_starttls: what the settings accept and refuse, before any host is contacted.
(The signature check itself runs on a lab host: tests/lab/test_mail_options.py.)"""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from mailstead.settings import OpenSmtpd, Settings, signify_key_problem

URL = "https://www.opensmtpd.org/archives/opensmtpd-7.9.0p0.tar.gz"
KEY = "untrusted comment: test public key\n" + base64.b64encode(b"Ed" + bytes(8) + bytes(range(32))).decode() + "\n"


def test_a_signify_key_as_text_or_file_is_accepted(tmp_path):
    o = OpenSmtpd(source="upstream", upstream_url=URL, signify_pubkey=KEY)
    assert o.signify_key_text() == KEY
    assert o.signify_sig_url == "https://www.opensmtpd.org/archives/opensmtpd-7.9.0p0.sum.sig"
    assert o.sha256 is None  # the signed checksum list replaces the pin
    key_file = tmp_path / "opensmtpd-20181026.pub"
    key_file.write_text(KEY)
    o = OpenSmtpd(source="upstream", upstream_url=URL, signify_pubkey=str(key_file))
    assert o.signify_key_text() == KEY


@pytest.mark.parametrize("value, message", [
    ("untrusted comment: x\nnot base64!\n", "its second line is not base64"),
    ("untrusted comment: x\n" + base64.b64encode(b"Ed" + bytes(30)).decode(), "not an Ed25519 signify public key"),
    ("untrusted comment: x\n" + base64.b64encode(b"XX" + bytes(40)).decode(), "not an Ed25519 signify public key"),
    (base64.b64encode(b"Ed" + bytes(40)).decode() + "\nsecond line", "has two lines"),
    ("keys/no-such-key.pub", "cannot read the key file"),
])
def test_a_malformed_signify_key_is_refused_with_the_fix(value, message):
    with pytest.raises(ValidationError) as e:
        OpenSmtpd(source="upstream", upstream_url=URL, signify_pubkey=value)
    assert message in str(e.value)
    assert "write signify_pubkey = " in str(e.value)


def test_a_key_file_with_something_else_in_it_is_refused(tmp_path):
    f = tmp_path / "key.pub"
    f.write_text("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValidationError, match="is not a signify public key"):
        OpenSmtpd(source="upstream", upstream_url=URL, signify_pubkey=str(f))


def test_upstream_needs_a_pin_or_a_key_and_the_key_needs_upstream():
    with pytest.raises(ValidationError, match="needs upstream_url and sha256 or signify_pubkey"):
        OpenSmtpd(source="upstream", upstream_url=URL)
    with pytest.raises(ValidationError, match="only used with source = 'upstream'"):
        OpenSmtpd(signify_pubkey=KEY)
    with pytest.raises(ValidationError, match="does not end in .tar.gz"):
        OpenSmtpd(source="upstream", upstream_url="https://example.org/opensmtpd.zip", signify_pubkey=KEY)
    assert signify_key_problem(KEY) is None


def test_imap_starttls_is_off_by_default_and_a_strict_bool():
    base = {"fqdn": "mx1.example.org", "environment": "production"}
    assert Settings(**base).imap_starttls is False
    assert Settings(**base, imap_starttls=True).imap_starttls is True
    with pytest.raises(ValidationError):
        Settings(**base, imap_starttls="yes")


def test_the_build_stamp_names_what_checked_the_tarball():
    from tasks.opensmtpd import build_stamp

    class S:
        opensmtpd = OpenSmtpd(source="upstream", upstream_url=URL, signify_pubkey=KEY)

    assert " source=upstream sha256=signify " in build_stamp(S)
    S.opensmtpd = OpenSmtpd()
    assert " source=debian-archive sha256=signed-index:forky " in build_stamp(S)
