"""mailstead.pki: the lab CA is made once and reused; a host certificate is reissued only when its names
change, the CA changed or fewer than 30 days remain, and a reissue keeps the host's key."""

from __future__ import annotations

import datetime as dt
import stat
from types import SimpleNamespace

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailstead import pki, secrets

FQDN = "mail.example.org"
NAMES = [FQDN, "mta-sts.example.org", "autoconfig.example.org"]
ADDRS = ["198.51.100.10", "2001:db8:51::10"]


def mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def listing(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cert_of(hc: pki.HostCert):
    return x509.load_pem_x509_certificate(hc.cert_pem)


def test_ca_created_once_and_reused(tmp_path):
    ca = tmp_path / "lab-ca"
    key, cert = pki.ensure_ca(ca)
    files = listing(ca)
    assert sorted(files) == ["ca.crt", "ca.key"]
    assert mode(ca / "ca.key") == 0o600 and mode(ca / "ca.crt") == 0o600 and mode(ca) == 0o700
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key2, cert2 = pki.ensure_ca(ca)
    assert cert2 == cert and listing(ca) == files


def test_host_certificate_issued_once_then_reused(tmp_path):
    ca = tmp_path / "lab-ca"
    first = pki.host_cert(ca, FQDN, NAMES, ADDRS)
    assert first.created and listing(ca).keys() == {"ca.crt", "ca.key", f"hosts/{FQDN}.crt", f"hosts/{FQDN}.key"}
    for f in (secrets.host_key_file(ca, FQDN), secrets.host_cert_file(ca, FQDN)):
        assert mode(f) == 0o600
    assert mode(ca / "hosts") == 0o700
    cert = cert_of(first)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(NAMES)
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ADDRS
    cert.verify_directly_issued_by(pki.load_ca(ca)[1])
    assert first.chain_pem == first.cert_pem + first.ca_pem

    files = listing(ca)
    again = pki.host_cert(ca, FQDN, NAMES, ADDRS)
    assert again.created == () and listing(ca) == files
    assert (again.key_pem, again.cert_pem, again.ca_pem) == (first.key_pem, first.cert_pem, first.ca_pem)
    assert pki.host_spki_sha256(ca, FQDN) == pki.spki_sha256(cert)
    assert pki.host_spki_sha256(ca, "other.example.org") is None


def test_reissued_when_names_change_keeping_the_key(tmp_path):
    ca = tmp_path / "lab-ca"
    first = pki.host_cert(ca, FQDN, NAMES, ADDRS)
    more = NAMES + ["mta-sts.example.net", "autoconfig.example.net"]
    second = pki.host_cert(ca, FQDN, more, ADDRS)
    assert second.cert_pem != first.cert_pem and second.key_pem == first.key_pem
    assert any("names changed" in c for c in second.created)
    assert pki.spki_sha256(cert_of(second)) == pki.spki_sha256(cert_of(first))  # TLSA 3 1 1 unchanged
    assert secrets.host_cert_file(ca, FQDN).read_bytes() == second.cert_pem


def test_reissued_when_the_ca_changed(tmp_path):
    ca = tmp_path / "lab-ca"
    first = pki.host_cert(ca, FQDN, NAMES, ADDRS)
    secrets.ca_key_file(ca).unlink()  # CA lost: a new one is made, the host certificate no longer verifies
    second = pki.host_cert(ca, FQDN, NAMES, ADDRS)
    assert second.ca_pem != first.ca_pem and second.cert_pem != first.cert_pem
    assert second.key_pem == first.key_pem
    assert any("lab CA key" in c for c in second.created)
    assert any("does not verify" in c for c in second.created)
    cert_of(second).verify_directly_issued_by(pki.load_ca(ca)[1])


def test_reissued_when_fewer_than_30_days_remain(tmp_path):
    ca = tmp_path / "lab-ca"
    first = pki.host_cert(ca, FQDN, NAMES, ADDRS)
    ca_key, ca_cert = pki.load_ca(ca)
    key = serialization.load_pem_private_key(first.key_pem, password=None)
    short = pki.issue(ca_key, ca_cert, key, FQDN, NAMES, ADDRS, days=29)
    secrets.write_private(secrets.host_cert_file(ca, FQDN), short.public_bytes(serialization.Encoding.PEM))
    second = pki.host_cert(ca, FQDN, NAMES, ADDRS)
    assert any("expires in 28 days" in c for c in second.created)
    left = cert_of(second).not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    assert left > dt.timedelta(days=pki.CERT_DAYS - 1)

    ok = pki.issue(ca_key, ca_cert, key, FQDN, NAMES, ADDRS, days=31)
    secrets.write_private(secrets.host_cert_file(ca, FQDN), ok.public_bytes(serialization.Encoding.PEM))
    assert pki.host_cert(ca, FQDN, NAMES, ADDRS).created == ()  # 30 days and more: kept


def test_reissue_reason(tmp_path):
    ca_key, ca_cert = pki.new_ca()
    other_key, other_ca = pki.new_ca()
    key = pki.ec.generate_private_key(pki.ec.SECP256R1())
    cert = pki.issue(ca_key, ca_cert, key, FQDN, NAMES)
    assert pki.reissue_reason(cert, ca_cert, reversed(NAMES)) is None
    assert pki.reissue_reason(cert, other_ca, NAMES) == "signature does not verify with the current lab CA"
    assert pki.reissue_reason(cert, ca_cert, NAMES[:1]).startswith("names changed")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=pki.CERT_DAYS - 29)
    assert pki.reissue_reason(cert, ca_cert, NAMES, now=later).startswith("expires in")


def test_write_false_writes_nothing_and_says_what_it_would_create(tmp_path):
    ca = tmp_path / "lab-ca"
    dry = pki.host_cert(ca, FQDN, NAMES, ADDRS, write=False)
    assert not tmp_path.joinpath("lab-ca").exists()
    assert len(dry.created) == 4 and all(str(ca) in c for c in dry.created)
    assert cert_of(dry).subject.rfc4514_string() == f"CN={FQDN}"

    real = pki.host_cert(ca, FQDN, NAMES, ADDRS)
    files = listing(ca)
    assert len(real.created) == 4
    assert pki.host_cert(ca, FQDN, NAMES[:1], ADDRS, write=False).created  # would reissue ...
    assert listing(ca) == files  # ... but wrote nothing


def test_host_names_and_ca_dir(tmp_path):
    s = SimpleNamespace(fqdn="Mail.Example.org.", is_mailserver=True, domains=["example.org", "example.net"],
                        secrets_dir=str(tmp_path), tls=SimpleNamespace(lab_ca_dir=None))
    assert pki.host_names(s, s) == ["mail.example.org", "mta-sts.example.org", "autoconfig.example.org",
                                 "mta-sts.example.net", "autoconfig.example.net"]
    trap = SimpleNamespace(fqdn="mx1.example.org", is_mailserver=False, domains=["example.org"])
    assert pki.host_names(trap, trap) == ["mx1.example.org"]
    assert pki.ca_dir(s, s) == tmp_path / "lab-ca"
    s.tls.lab_ca_dir = str(tmp_path / "ca")
    assert pki.ca_dir(s, s) == tmp_path / "ca"
