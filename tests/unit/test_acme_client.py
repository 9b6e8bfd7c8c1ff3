"""The host-side ACME client's pure logic (mailstead/acme), run against the deploy machine's acme and
cryptography: the names of a host's certificate, ARI's certID, the renewal decision, the client's run against a
stubbed CA (failure keeps the old certificate and says why), and what the deploy writes for the host."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailstead import acme_keys, secrets
from mailstead.acme import client, renewal
from mailstead.acme.__main__ import main

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
NAMES = ["mail.example.org", "mta-sts.example.org", "autoconfig.example.org"]


def make_cert(key, names, days=90, start=NOW - dt.timedelta(days=1), serial=0x00F1E2D3C4B5A697,
              issuer_key=None, aki=b"\x01\x02\x03\x04" * 5):
    issuer_key = issuer_key or ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False))
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture()
def key():
    return ec.generate_private_key(ec.SECP256R1())


def test_names_are_the_host_then_each_domains_web_names_lowercase_without_duplicates():
    assert renewal.cert_names("Mail.Example.ORG.", ["example.org", "Example.NET"]) == [
        "mail.example.org", "mta-sts.example.org", "autoconfig.example.org",
        "mta-sts.example.net", "autoconfig.example.net"]
    assert renewal.cert_names("mail.example.org", ["example.org", "example.org"]) == NAMES


def test_ari_cert_id_is_aki_dot_der_serial_base64url_as_rfc_9773_section_4_1(key):
    # RFC 9773's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    cert = make_cert(key, NAMES, serial=0x87654321, aki=aki)
    assert renewal.ari_cert_id(cert) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    small = make_cert(key, NAMES, serial=0x12, aki=aki)
    assert renewal.ari_cert_id(small).endswith(".Eg")


def test_ari_window_parses_rfc_3339_with_nanoseconds_and_refuses_a_backwards_window():
    start, end = renewal.ari_window({"suggestedWindow": {"start": "2026-12-01T10:00:00.123456789Z",
                                                         "end": "2026-12-02T10:00:00Z"}})
    assert start == dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
    assert end - start < dt.timedelta(days=1)
    with pytest.raises(ValueError):
        renewal.ari_window({"suggestedWindow": {"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}})
    with pytest.raises(KeyError):
        renewal.ari_window({})


def test_renewal_decision_without_ari_is_one_third_of_the_lifetime_left(key):
    cert = make_cert(key, NAMES, days=90, start=NOW - dt.timedelta(days=59))
    spki = renewal.spki_der(key.public_key())
    assert renewal.renewal_reason(cert, NAMES, spki, now=NOW) is None  # 31 days left of 90
    assert "third" in renewal.renewal_reason(cert, NAMES, spki, now=NOW + dt.timedelta(days=2))
    short = make_cert(key, NAMES, days=6, start=NOW - dt.timedelta(days=4, hours=1))  # a 6-day profile
    assert "third" in renewal.renewal_reason(short, NAMES, spki, now=NOW)
    assert "expired" in renewal.renewal_reason(cert, NAMES, spki, now=NOW + dt.timedelta(days=40))


def test_renewal_decision_follows_ari_inside_its_window_and_ignores_the_third_rule(key):
    cert = make_cert(key, NAMES, days=90, start=NOW - dt.timedelta(days=80))  # the third rule would renew
    before = (NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=2))
    assert renewal.renewal_reason(cert, NAMES, now=NOW, ari=before) is None
    passed = (NOW - dt.timedelta(days=2), NOW - dt.timedelta(days=1))
    assert "window ended" in renewal.renewal_reason(cert, NAMES, now=NOW, ari=passed)
    inside = (NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1))
    early, late = random.Random(), random.Random()
    early.random, late.random = (lambda: 0.1), (lambda: 0.9)
    assert "inside the suggested window" in renewal.renewal_reason(cert, NAMES, now=NOW, ari=inside, rng=early)
    assert renewal.renewal_reason(cert, NAMES, now=NOW, ari=inside, rng=late) is None


def test_renewal_decision_replaces_a_certificate_for_other_names_another_key_or_another_ca(key):
    cert = make_cert(key, NAMES)
    spki = renewal.spki_der(key.public_key())
    assert renewal.renewal_reason(None, NAMES, spki, now=NOW) == "no certificate yet"
    assert "needs" in renewal.renewal_reason(cert, NAMES + ["mta-sts.example.net"], spki, now=NOW)
    other = renewal.spki_der(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert "another key" in renewal.renewal_reason(cert, NAMES, other, now=NOW)
    assert "not issued by this ACME setup" in renewal.renewal_reason(cert, NAMES, spki, now=NOW, issued_here=False)
    assert renewal.renewal_reason(cert, list(reversed(NAMES)), spki, now=NOW) is None  # order does not matter


def _host(tmp_path, key, cert=None, state=None):
    """A host's files for the client: its key, maybe a certificate and a state file, the config."""
    (tmp_path / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    if cert is not None:
        (tmp_path / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
    cfg = {"directory": "https://acme.example.org/dir", "ca_bundle": None, "contact": "postmaster@example.org",
           "profile": None, "webroot": str(tmp_path / "www"), "names": NAMES,
           "account_key": str(tmp_path / "account.key"), "cert_key": str(tmp_path / "privkey.pem"),
           "cert": str(tmp_path / "fullchain.pem"), "state": str(tmp_path / "state.json"),
           "renew_now": str(tmp_path / "renew-now"), "reload": [["true"]], "wait_dns": 0}
    (tmp_path / "acme.json").write_text(json.dumps(cfg))
    return client.load_config(str(tmp_path / "acme.json"))


def test_a_failed_renewal_keeps_the_old_certificate_and_says_why_in_one_line(tmp_path, key, monkeypatch, capsys):
    old = make_cert(key, NAMES, days=90, start=NOW - dt.timedelta(days=80))
    cfg = _host(tmp_path, key, old, {"directory": cfg_dir(), "serial": format(old.serial_number, "x")})
    before = (tmp_path / "fullchain.pem").read_bytes()
    monkeypatch.setattr(client, "wait_for_names", lambda names, timeout: None)
    monkeypatch.setattr(client, "fetch_directory", lambda cfg: {})  # no ARI: the one-third rule says due

    def refused(cfg):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(client, "issue", refused)
    assert main(["run", "--config", str(tmp_path / "acme.json")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mailstead-acme: FAILED: ConnectionRefusedError")
    assert f"the current certificate (serial {old.serial_number:x}" in err[0] and "keeps serving" in err[0]
    assert (tmp_path / "fullchain.pem").read_bytes() == before
    assert cfg["names"] == NAMES


def test_a_chain_for_another_key_is_not_installed(tmp_path, key, monkeypatch):
    cfg = _host(tmp_path, key)
    monkeypatch.setattr(client, "wait_for_names", lambda names, timeout: None)
    wrong = make_cert(ec.generate_private_key(ec.SECP256R1()), NAMES)
    monkeypatch.setattr(client, "issue", lambda cfg: (wrong.public_bytes(serialization.Encoding.PEM), "acct"))
    with pytest.raises(client.AcmeFailure, match="another key"):
        client.run(cfg)
    assert not (tmp_path / "fullchain.pem").exists()


def test_a_new_chain_is_installed_with_its_state_and_renew_now_is_consumed(tmp_path, key, monkeypatch):
    old = make_cert(key, NAMES, serial=1)
    cfg = _host(tmp_path, key, old, {"directory": cfg_dir(), "serial": "1"})
    (tmp_path / "renew-now").touch()
    new = make_cert(key, NAMES, serial=2)
    monkeypatch.setattr(client, "wait_for_names", lambda names, timeout: None)
    monkeypatch.setattr(client, "issue", lambda cfg: (new.public_bytes(serialization.Encoding.PEM), "https://ca/acct/1"))
    assert client.run(cfg) is True  # not due, but renew-now forces it
    assert x509.load_pem_x509_certificate((tmp_path / "fullchain.pem").read_bytes()).serial_number == 2
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["serial"] == "2" and state["account"] == "https://ca/acct/1"
    assert not (tmp_path / "renew-now").exists()
    monkeypatch.setattr(client, "fetch_directory", lambda cfg: {})
    assert client.due(cfg, now=NOW) is None  # the new certificate is current and from this setup


def cfg_dir():
    return "https://acme.example.org/dir"


def test_the_acme_client_of_the_deploy_machine_has_what_the_client_uses():
    from acme import client as acme_client, crypto_util, messages

    assert hasattr(acme_client.ClientV2, "poll_and_finalize") and hasattr(crypto_util, "make_csr")
    assert hasattr(messages.NewOrder, "identifiers")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    csr = x509.load_pem_x509_csr(crypto_util.make_csr(pem, NAMES))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES


def test_the_host_identity_is_made_once_in_secrets_and_a_dry_run_writes_nothing(tmp_path):
    dry = acme_keys.identity(tmp_path, "mail.example.org", write=False)
    assert not (tmp_path / "acme").exists() and len(dry.created) == 2
    first = acme_keys.identity(tmp_path, "mail.example.org")
    again = acme_keys.identity(tmp_path, "mail.example.org")
    assert (first.account_key_pem, first.cert_key_pem) == (again.account_key_pem, again.cert_key_pem)
    assert again.created == ()
    d = secrets.acme_dir(tmp_path, "mail.example.org")
    assert oct((d / "cert.key").stat().st_mode & 0o777) == "0o600" and oct(d.stat().st_mode & 0o777) == "0o700"
    key = serialization.load_pem_private_key(first.cert_key_pem, password=None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    assert acme_keys.cert_key_spki_sha256(tmp_path, "mail.example.org") == hashlib.sha256(spki).hexdigest()


class FakeProvider:
    """Records what the DNS-01 code asks a provider adapter to do (the adapters' own tests cover the wire)."""

    name = "fake"

    def __init__(self, held=None):
        from mailstead.dns.records import Record

        self.held = {k: Record.make(k[0], "TXT", 60, v) for k, v in (held or {}).items()}
        self.applied = []

    def list_records(self, zone, wanted=None):
        return [r for k, r in self.held.items() if wanted is None or k in wanted]

    def apply(self, zone, changes):
        from mailstead.dns.records import Record

        self.applied.append((zone, [(c.action, c.name, c.new, c.old) for c in changes]))
        for c in changes:
            if c.new:
                self.held[(c.name, "TXT")] = Record.make(c.name, "TXT", 60, c.new)
            else:
                self.held.pop((c.name, "TXT"), None)


def test_dns_01_adds_the_challenge_next_to_foreign_values_and_removes_only_its_own(monkeypatch):
    from mailstead.acme import dns01

    foreign = '"left by someone else"'
    fake = FakeProvider({("_acme-challenge.mta-sts.example.org", "TXT"): [foreign]})
    zones = {n: "example.org" for n in NAMES}
    monkeypatch.setattr(dns01, "provider", lambda cfg: (fake, zones))
    values = {"mail.example.org": "abc", "mta-sts.example.org": "def"}
    said = []
    dns01.publish({}, values, said.append)
    ((zone, changes),) = fake.applied
    assert zone == "example.org"
    assert sorted(changes) == [("add", "_acme-challenge.mail.example.org", ('"abc"',), ()),
                               ("change", "_acme-challenge.mta-sts.example.org", ('"def"', foreign), (foreign,))]
    fake.applied.clear()
    dns01.remove({}, values, said.append)
    ((_, changes),) = fake.applied
    assert sorted(changes) == [("change", "_acme-challenge.mta-sts.example.org", (foreign,), ('"def"', foreign)),
                               ("delete", "_acme-challenge.mail.example.org", (), ('"abc"',))]
    assert said == ["dns-01: published 2 TXT record(s) in example.org through fake",
                    "dns-01: removed 2 TXT record(s) in example.org through fake"]


def test_dns_01_zone_of_each_name():
    from tasks.certificates import zone_of

    from dns_helpers import make_env

    env = make_env(domains=["example.org", "mail.example.net"])
    assert zone_of("mta-sts.mail.example.net", env) == "mail.example.net"
    assert zone_of("mail.example.org", env) == "example.org"
    assert zone_of("mx.elsewhere.example", env) == "elsewhere.example"
    pinned = make_env(dns={"provider": "powerdns", "api_url": "https://ns.example.org", "zone": "Example.ORG.",
                           "secret_file": "pdns-key"})
    assert zone_of("mail.example.org", pinned) == "example.org"


@pytest.mark.parametrize("dns01", [False, True])
def test_the_files_the_host_gets_import_on_their_own(tmp_path, dns01):
    """What tasks.certificates copies to /usr/local/lib/mailstead is complete: the client (and with dns-01 the
    provider adapters) import from that copy alone, without the rest of mailstead (no settings, no pyinfra)."""
    import subprocess
    import sys

    from tasks.certificates import _client_files

    for rel, data in _client_files(dns01).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    code = ("import sys, mailstead.acme.__main__, mailstead.acme.client\n"
            + ("import mailstead.dns.providers.powerdns, mailstead.dns.providers.rfc2136\n" if dns01 else "")
            + "bad = [m for m, mod in sys.modules.items() if m.startswith('mailstead') and getattr(mod, '__file__', '')"
            f" and not mod.__file__.startswith({str(tmp_path)!r})]\n"
            "assert not bad, bad\n"
            "assert not [m for m in sys.modules if m.startswith(('pyinfra', 'pydantic', 'tasks'))]\n")
    p = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
                       cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
