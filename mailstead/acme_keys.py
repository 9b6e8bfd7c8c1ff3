"""The deploy machine's side of tls.mode 'acme': the host's ACME identity kept in secrets_dir.

Two keys per host, made once and never replaced by mailstead (``secrets.acme_dir``):

  account.key   RSA 2048: the ACME account. The host's client sends newAccount with it; a CA that already
                knows the key answers with the existing account (RFC 8555 7.3.1), so a rebuilt host keeps its
                account and its issuance history instead of registering again.
  cert.key      EC P-256: the certificate key, reused by every renewal, so the TLSA 3 1 1 record (DANE)
                published for it stays valid.

``write=False`` (a ``--dry`` run) makes nothing on the deploy machine: missing keys are then reported in
``created`` and exist only in memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mailstead import secrets


@dataclass(frozen=True)
class AcmeIdentity:
    account_key_pem: bytes
    cert_key_pem: bytes
    created: tuple[str, ...]


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _ensure(path: Path, make, what: str, write: bool, created: list[str]) -> bytes:
    if path.exists():
        return path.read_bytes()
    pem = _pem(make())
    if write:
        secrets.write_private(path, pem)
    created.append(f"{what} {path}")
    return pem


def identity(secrets_dir, fqdn: str, write: bool = True) -> AcmeIdentity:
    """The host's ACME account key and certificate key, made on first use."""
    d = secrets.acme_dir(secrets_dir, fqdn)
    created: list[str] = []
    account = _ensure(d / "account.key", lambda: rsa.generate_private_key(65537, 2048),
                      f"the ACME account key of {fqdn}", write, created)
    cert = _ensure(d / "cert.key", lambda: ec.generate_private_key(ec.SECP256R1()),
                   f"the TLS key of {fqdn}", write, created)
    return AcmeIdentity(account, cert, tuple(created))


def cert_key_spki_sha256(secrets_dir, fqdn: str) -> str | None:
    """TLSA 3 1 1 data (SHA-256 of the SubjectPublicKeyInfo, hex) of the host's ACME certificate key; None when
    it has none yet."""
    path = secrets.acme_dir(secrets_dir, fqdn) / "cert.key"
    if not path.exists():
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()
