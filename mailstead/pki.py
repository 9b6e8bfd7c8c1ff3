"""The private CA of tls.mode 'lab' (offline, no ACME): made with ``cryptography`` on the deploy machine.

The CA (EC P-256, 10 years) is created once in its directory (``secrets.lab_ca_dir``: ``<secrets_dir>/lab-ca``
or the tls.lab_ca_dir setting) and reused. Each host gets an EC P-256 key and a 90-day certificate for its
names (``host_names``) and addresses, kept as ``hosts/<fqdn>.key`` / ``.crt`` next to the CA. The certificate
is reissued only when the host's names change, the CA changed, or fewer than 30 days remain; a reissue keeps
the host's key (so a TLSA 3 1 1 record stays valid). Every file is written with ``secrets.write_private``.

``host_cert(..., write=False)`` decides and computes the same way but writes nothing: what it would have
written is in the result's ``created`` (a ``pyinfra --dry`` run reports it instead of creating it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailstead import secrets

CA_DAYS = 3650
CERT_DAYS = 90
RENEW_BEFORE_DAYS = 30
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailstead lab CA"),
                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailstead lab")])


@dataclass(frozen=True)
class HostCert:
    """A host's key, its certificate and the CA certificate (PEM); ``created`` names the files that were
    written to make them (or, with write=False, would have been)."""

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    created: tuple[str, ...] = field(default=())

    @property
    def chain_pem(self) -> bytes:
        """What the daemons serve: the host certificate followed by the CA certificate."""
        return self.cert_pem + self.ca_pem


def ca_dir(settings, env) -> Path:
    """The lab CA's directory: the host's tls.lab_ca_dir, or lab-ca/ in the environment's secrets_dir."""
    return secrets.lab_ca_dir(env.secrets_dir, settings.tls.lab_ca_dir)


def host_names(settings, env) -> list[str]:
    """DNS names the host's certificate covers: its own name (the MX / IMAP / submission host name) and, on
    mail servers, the per-domain web names the DNS stage points at the mail hosts (mta-sts., autoconfig.)."""
    names = [settings.fqdn]
    if settings.is_mailserver:
        for d in env.domains:
            names += [f"mta-sts.{d}", f"autoconfig.{d}"]
    return list(dict.fromkeys(n.lower().rstrip(".") for n in names))


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ------------------------------------------------------------------------------------------------ CA
def load_ca(ca_dir: Path):
    """(key, certificate) of the CA in ``ca_dir``, or None when either file is missing."""
    key_file, cert_file = secrets.ca_key_file(ca_dir), secrets.ca_cert_file(ca_dir)
    if not (key_file.exists() and cert_file.exists()):
        return None
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    return key, x509.load_pem_x509_certificate(cert_file.read_bytes())


def new_ca():
    """A new CA (key, certificate), in memory."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(CA_NAME).issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def ensure_ca(ca_dir: Path, write: bool = True, created: list[str] | None = None):
    """The CA in ``ca_dir`` (key, certificate), created on first use. ``created`` collects what was (or,
    with write=False, would be) written."""
    ca = load_ca(ca_dir)
    if ca is not None:
        return ca
    key, cert = new_ca()
    key_file, cert_file = secrets.ca_key_file(ca_dir), secrets.ca_cert_file(ca_dir)
    if write:
        secrets.write_private(key_file, _key_pem(key))
        secrets.write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    if created is not None:
        created += [f"the lab CA key {key_file}", f"the lab CA certificate {cert_file}"]
    return key, cert


# ------------------------------------------------------------------------------------- host certificates
def reissue_reason(cert, ca_cert, names: Iterable[str], now: dt.datetime | None = None) -> str | None:
    """Why ``cert`` must be issued again for ``names`` by the CA ``ca_cert``; None when it can stay."""
    if cert.issuer != ca_cert.subject:
        return "issued by another CA"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # noqa: BLE001 - any verification problem means: issue a new one
        return "signature does not verify with the current lab CA"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subjectAltName"
    have = sorted(n.lower() for n in san.get_values_for_type(x509.DNSName))
    if have != sorted(names):
        return f"names changed ({', '.join(have)} -> {', '.join(sorted(names))})"
    left = cert.not_valid_after_utc - (now or _now())
    if left < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return f"expires in {left.days} days"
    return None


def issue(ca_key, ca_cert, key, fqdn: str, names: Iterable[str], addresses: Iterable = (),
          days: int = CERT_DAYS):
    """A server (and client) certificate for ``key`` covering ``names`` and ``addresses``, signed by the CA."""
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(str(a))) for a in addresses]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def host_cert(ca_dir: Path, fqdn: str, names: Iterable[str], addresses: Iterable = (),
              write: bool = True) -> HostCert:
    """The host's key and certificate, reusing what ``ca_dir`` holds unless it must be reissued (then the
    stored key is kept; a host without a stored certificate gets a new key). The CA is created if missing.
    With ``write=False`` nothing is written: new material exists only in the result."""
    names = list(names)
    created: list[str] = []
    ca_key, ca_cert = ensure_ca(ca_dir, write=write, created=created)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    key_file, cert_file = secrets.host_key_file(ca_dir, fqdn), secrets.host_cert_file(ca_dir, fqdn)

    reason = "new host"
    if key_file.exists() and cert_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        reason = reissue_reason(cert, ca_cert, names)
        if reason is None:
            return HostCert(key_file.read_bytes(), cert_file.read_bytes(), ca_pem, tuple(created))
        key_pem = key_file.read_bytes()  # keep the key (DANE 3 1 1)
        key = serialization.load_pem_private_key(key_pem, password=None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = _key_pem(key)
        if write:
            secrets.write_private(key_file, key_pem)
        created.append(f"the TLS key of {fqdn} {key_file}")

    cert_pem = issue(ca_key, ca_cert, key, fqdn, names, addresses).public_bytes(serialization.Encoding.PEM)
    if write:
        secrets.write_private(cert_file, cert_pem)
    created.append(f"the TLS certificate of {fqdn} {cert_file} ({reason})")
    return HostCert(key_pem, cert_pem, ca_pem, tuple(created))


# ------------------------------------------------------------------------------------------- TLSA 3 1 1
def spki_sha256(cert) -> str:
    """SHA-256 (hex) of the certificate's SubjectPublicKeyInfo: the data of a TLSA 3 1 1 record."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def host_spki_sha256(ca_dir: Path, fqdn: str) -> str | None:
    """The TLSA 3 1 1 hash of the certificate the CA in ``ca_dir`` keeps for ``fqdn``; None if it has none."""
    cert_file = secrets.host_cert_file(ca_dir, fqdn)
    if not cert_file.exists():
        return None
    return spki_sha256(x509.load_pem_x509_certificate(cert_file.read_bytes()))
