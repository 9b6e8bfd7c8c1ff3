"""The records model: what a mail domain publishes, computed from real settings models."""

from __future__ import annotations

import base64

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding

from mailstead import dkim
from mailstead.dns.records import compute, is_spf, mta_sts_policy, ownership, txt_join
from dns_helpers import MAIL, TRAP_FIRST, TRAP_LAST, by_key, make_env


@pytest.fixture
def secrets(tmp_path):
    return tmp_path / "secrets"


def records_for(env, secrets, **kw):
    return by_key(compute(env, dkim.dkim_public(secrets, env.domains, env.dkim_rsa_bits), **kw))


def strings(value: str) -> list[bytes]:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, value).strings


def test_mx_preferences_follow_the_spamtrap_design(secrets):
    recs = records_for(make_env(), secrets)
    assert recs[("example.org", "MX")].values == (
        "10 mx1.example.org.", "20 mail.example.org.", "30 mx3.example.org.")
    only_mail = records_for(make_env(hosts=[MAIL]), secrets)
    assert only_mail[("example.org", "MX")].values == ("20 mail.example.org.",)


def test_every_host_name_involved_has_its_addresses(secrets):
    recs = records_for(make_env(), secrets)
    assert recs[("mail.example.org", "A")].values == ("198.51.100.10",)
    assert recs[("mail.example.org", "AAAA")].values == ("2001:db8:51::10",)
    assert recs[("mx1.example.org", "AAAA")].values == ("2001:db8:51::20",)
    assert recs[("mx3.example.org", "A")].values == ("198.51.100.30",)
    assert ("mx3.example.org", "AAAA") not in recs  # no IPv6 configured: no record
    for name in ("mta-sts.example.org", "autoconfig.example.org"):  # served by the real mail host
        assert recs[(name, "A")].values == ("198.51.100.10",)
        assert recs[(name, "AAAA")].values == ("2001:db8:51::10",)


def test_spf_authorises_exactly_the_sending_hosts(secrets):
    spf = records_for(make_env(), secrets)[("example.org", "TXT")]
    (value,) = spf.values
    text = txt_join(value)
    assert text == "v=spf1 ip4:198.51.100.10 ip6:2001:db8:51::10 -all"
    assert " mx" not in text and "198.51.100.20" not in text and "198.51.100.30" not in text


def test_spf_names_a_host_without_known_addresses(secrets):
    # settings refuse a host without addresses today; the model still never falls back to a bare "mx"
    from mailstead.settings import MailHost

    bare = (MailHost(fqdn="mail.example.org"),)
    env = make_env(hosts=[MAIL]).model_copy(update={"mail_hosts": bare, "sending_hosts": bare})
    (value,) = records_for(env, secrets)[("example.org", "TXT")].values
    assert txt_join(value) == "v=spf1 a:mail.example.org -all"


def test_dkim_records_carry_the_public_keys_of_the_stored_private_keys(secrets):
    env = make_env(dkim_rsa_bits=4096)  # long enough to need several TXT strings
    recs = records_for(env, secrets)
    keys = {k.selector: k for k in dkim.published_keys(secrets, "example.org")}
    assert {k.algorithm for k in keys.values()} == {"rsa", "ed25519"}
    msg = b"signed header hash"
    for sel, k in keys.items():
        (value,) = recs[(f"{sel}._domainkey.example.org", "TXT")].values
        assert all(len(s) <= 255 for s in strings(value))
        tags = dict(t.strip().split("=", 1) for t in txt_join(value).split(";"))
        assert tags["v"] == "DKIM1" and tags["k"] == k.algorithm
        pub = base64.b64decode(tags["p"])
        if k.algorithm == "rsa":
            assert len(strings(value)) > 1
            priv = serialization.load_pem_private_key(k.path.read_bytes(), None)
            sig = priv.sign(msg, padding.PKCS1v15(), hashes.SHA256())
            serialization.load_der_public_key(pub).verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
        else:
            assert len(pub) == 32  # RFC 8463: raw key, not SubjectPublicKeyInfo
            seed = base64.b64decode(k.path.read_bytes())[:32]
            sig = ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign(msg)
            ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)


def test_dmarc_defaults_and_one_setting_changes_one_record(secrets):
    before = records_for(make_env(), secrets)
    (value,) = before[("_dmarc.example.org", "TXT")].values
    assert txt_join(value) == "v=DMARC1; p=reject; np=reject; adkim=s; aspf=s; rua=mailto:postmaster@example.org"
    assert "pct=" not in value and "ri=" not in value
    after = records_for(make_env(dmarc={"p": "quarantine"}), secrets)
    changed = {k for k in before if before[k] != after.get(k)} | (after.keys() - before.keys())
    assert changed == {("_dmarc.example.org", "TXT")}
    assert "p=quarantine" in after[("_dmarc.example.org", "TXT")].values[0]


def test_mta_sts_id_changes_exactly_when_the_policy_changes(secrets):
    def sts(env):
        (v,) = records_for(env, secrets)[("_mta-sts.example.org", "TXT")].values
        return txt_join(v)

    base = make_env()
    assert sts(base).startswith("v=STSv1; id=")
    assert sts(make_env()) == sts(base)  # same settings, same id (stable across runs)
    assert sts(make_env(dmarc={"p": "none"})) == sts(base)  # unrelated change
    assert sts(make_env(mta_sts_mode="testing")) != sts(base)
    assert sts(make_env(mta_sts_max_age=86400)) != sts(base)
    second = ("mail2.example.org", {"ipv4": "198.51.100.11"})
    assert sts(make_env(hosts=[MAIL, second, TRAP_FIRST, TRAP_LAST])) != sts(base)


def test_mta_sts_policy_lists_the_real_mx_with_crlf_lines():
    policy = mta_sts_policy(make_env())
    assert policy == "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 604800\r\n"


def test_reporting_srv_caa(secrets):
    recs = records_for(make_env(), secrets)
    assert txt_join(recs[("_smtp._tls.example.org", "TXT")].values[0]) == "v=TLSRPTv1; rua=mailto:postmaster@example.org"
    assert recs[("_submissions._tcp.example.org", "SRV")].values == ("0 1 465 mail.example.org.",)
    assert recs[("_submission._tcp.example.org", "SRV")].values == ("0 1 587 mail.example.org.",)
    assert recs[("_imaps._tcp.example.org", "SRV")].values == ("0 1 993 mail.example.org.",)
    for svc in ("_imap._tcp", "_pop3._tcp", "_pop3s._tcp"):
        assert recs[(f"{svc}.example.org", "SRV")].values == ("0 0 0 .",)  # RFC 6186: not offered
    assert recs[("example.org", "CAA")].values == ('0 issue "letsencrypt.org"',)
    other = records_for(make_env(tls={"caa_issuer": "ca.example.net"}), secrets)
    assert other[("example.org", "CAA")].values == ('0 issue "ca.example.net"',)


def test_tlsa_only_when_the_zone_is_signed(secrets):
    h = "ab" * 32
    unsigned = records_for(make_env(), secrets, tls_pubkey_hashes={"mail.example.org": h})
    assert not [k for k in unsigned if k[1] == "TLSA"]
    signed = records_for(make_env(dnssec=True), secrets, tls_pubkey_hashes={"mail.example.org": h})
    assert signed[("_25._tcp.mail.example.org", "TLSA")].values == (f"3 1 1 {h}",)
    assert [k for k in signed if k[1] == "TLSA"] == [("_25._tcp.mail.example.org", "TLSA")]


def test_several_domains_share_host_records(secrets):
    env = make_env(domains=["example.org", "example.net"])
    recs = compute(env, dkim.dkim_public(secrets, env.domains))
    keys = [r.key for r in recs]
    assert len(keys) == len(set(keys))
    assert ("example.net", "MX") in keys and ("_dmarc.example.net", "TXT") in keys
    assert any(k[0].endswith("._domainkey.example.net") for k in keys)


def test_ownership_apex_txt_and_caa_are_shared_the_rest_owned(secrets):
    recs = compute(make_env(), dkim.dkim_public(secrets, ["example.org"]))
    own = ownership(recs)
    assert own.is_shared(("example.org", "TXT")) and own.is_shared(("example.org", "CAA"))
    assert own.owns_value(("example.org", "TXT"), '"v=spf1 -all"')
    assert not own.owns_value(("example.org", "TXT"), '"google-site-verification=abc"')
    assert not own.owns_value(("example.org", "CAA"), '0 issue "other-ca.example"')
    assert ("_dmarc.example.org", "TXT") in own.full and ("example.org", "MX") in own.full
    assert not is_spf('"v=spf10 nonsense"')


def test_tlsa_hash_is_the_sha256_of_the_host_certificates_public_key(tmp_path):
    import datetime as dt
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from mailstead.dns import desired_records

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.org")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    hosts = tmp_path / "lab-ca" / "hosts"
    hosts.mkdir(parents=True)
    (hosts / "mail.example.org.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    lab = {"mode": "lab", "trusted_by_senders": True}
    recs = by_key(desired_records(make_env(secrets_dir=str(tmp_path), dnssec=True, tls=lab)))
    assert recs[("_25._tcp.mail.example.org", "TLSA")].values == (f"3 1 1 {hashlib.sha256(spki).hexdigest()}",)
    assert not [k for k in by_key(desired_records(make_env(secrets_dir=str(tmp_path), tls=lab))) if k[1] == "TLSA"]


def test_tlsa_of_an_acme_host_pins_its_certificate_key_from_secrets(tmp_path):
    """tls.mode 'acme': the TLSA 3 1 1 data is the SPKI hash of secrets/acme/<host>/cert.key, the key every
    renewal reuses (no certificate needed); a host whose key is not made yet gets no TLSA record."""
    import hashlib

    from mailstead import acme_keys
    from mailstead.dns import desired_records

    assert not [k for k in by_key(desired_records(make_env(secrets_dir=str(tmp_path), dnssec=True)))
                if k[1] == "TLSA"]
    ident = acme_keys.identity(tmp_path, "mail.example.org")
    key = serialization.load_pem_private_key(ident.cert_key_pem, password=None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    recs = by_key(desired_records(make_env(secrets_dir=str(tmp_path), dnssec=True)))
    assert recs[("_25._tcp.mail.example.org", "TLSA")].values == (f"3 1 1 {hashlib.sha256(spki).hexdigest()}",)
