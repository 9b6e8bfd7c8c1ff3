"""TLS for every daemon: one certificate + key at a fixed place, whoever issues it.

Daemons (Dovecot, OpenSMTPD, later nginx) read only

    /etc/mailstead/tls/fullchain.pem   leaf + intermediates, 0644 root:root
    /etc/mailstead/tls/privkey.pem     0640 root:mailstead-tls

Dovecot and smtpd load them as root at start, so the group is only for unprivileged readers added later
(add their user to ``mailstead-tls``). Which issuer fills them is ``settings.tls.mode``:

- ``lab``: a private CA made with ``cryptography`` on the deploy machine under ``<secrets_dir>/lab-ca/``
  (or ``tls.lab_ca_dir``), created once and reused; each host's key and certificate are kept next to it
  (``hosts/<fqdn>.{key,crt}``, mode 0600) and reissued only when the host's names change, the CA changed,
  or fewer than 30 days remain. The CA certificate is also installed in the host's trust store.
- ``acme``: hook for the ACME issuer (later work): a module ``tasks.acme`` with
  ``deploy(settings, cert_path, key_path, key_group)`` that writes the same two files.

After ``deploy(settings)``, ``changed_ops()`` gives the operations whose change means "certificate replaced":
the daemon tasks restart/reload on them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from io import BytesIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import files, server

from mailstead import PROJECT_DIR
from tasks.common import checked_file

TLS_DIR = "/etc/mailstead/tls"
CERT_PATH = f"{TLS_DIR}/fullchain.pem"
KEY_PATH = f"{TLS_DIR}/privkey.pem"
TLS_GROUP = "mailstead-tls"
# What mail clients get (465, 587, 993, 143, 4190): TLS 1.2 with forward-secret AEAD suites only, or TLS 1.3
# (whose suites are all AEAD). Port 25 keeps the daemons' wider defaults for old senders.
CLIENT_PROTOCOLS_OPENSSL = "tlsv1.2,tlsv1.3"
CLIENT_CIPHERS = ":".join(f"ECDHE-{sig}-{suite}" for suite in ("AES128-GCM-SHA256", "AES256-GCM-SHA384",
                                                               "CHACHA20-POLY1305") for sig in ("ECDSA", "RSA"))
LAB_CA_TRUST_PATH = "/usr/local/share/ca-certificates/mailstead-lab-ca.crt"
# the services that read CERT_PATH / KEY_PATH (their pending markers, see tasks/common.py)
CERT_USERS = ("opensmtpd", "dovecot", "nginx")

LAB_CA_DAYS = 3650
LAB_CERT_DAYS = 90
RENEW_BEFORE_DAYS = 30

_changed: dict[str, list] = {}


def changed_ops() -> list:
    """Operations of this host's TLS stage that replace the certificate or key (for restart_if)."""
    return list(_changed.get(host.name, []))


def tls_names(settings) -> list[str]:
    """DNS names the host's certificate covers: its own name (the MX / IMAP / submission host name) and, on
    mail servers, the per-domain web names the DNS stage points at the mail hosts (mta-sts., autoconfig.)."""
    names = [settings.fqdn]
    if settings.is_mailserver:
        for d in settings.domains:
            names += [f"mta-sts.{d}", f"autoconfig.{d}"]
    return list(dict.fromkeys(n.lower().rstrip(".") for n in names))


def secrets_path(settings) -> Path:
    p = Path(settings.secrets_dir)
    return p if p.is_absolute() else PROJECT_DIR / p


def lab_ca_dir(settings) -> Path:
    if settings.tls.lab_ca_dir:
        p = Path(settings.tls.lab_ca_dir)
        return p if p.is_absolute() else PROJECT_DIR / p
    return secrets_path(settings) / "lab-ca"


# ----------------------------------------------------------------------------- lab CA (deploy machine)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ensure_lab_ca(ca_dir: Path):
    """The lab CA (key, certificate), created on first use. Returns (key, cert) objects."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key_file, cert_file = ca_dir / "ca.key", ca_dir / "ca.crt"
    if key_file.exists() and cert_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        return key, cert
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailstead lab CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailstead lab")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LAB_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _needs_reissue(cert, ca_cert, names: list[str]) -> str | None:
    from cryptography import x509

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
    left = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    if left < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return f"expires in {left.days} days"
    return None


def ensure_lab_host_cert(settings) -> tuple[bytes, bytes, bytes]:
    """(key PEM, fullchain PEM, CA PEM) for this host, reusing what is stored unless it must be reissued."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_dir = lab_ca_dir(settings)
    ca_key, ca_cert = ensure_lab_ca(ca_dir)
    names = tls_names(settings)
    key_file = ca_dir / "hosts" / f"{settings.fqdn}.key"
    cert_file = ca_dir / "hosts" / f"{settings.fqdn}.crt"
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)

    if key_file.exists() and cert_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        if _needs_reissue(cert, ca_cert, names) is None:
            return key_file.read_bytes(), cert_file.read_bytes() + ca_pem, ca_pem
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)  # keep the key (DANE 3 1 1)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))

    now = dt.datetime.now(dt.timezone.utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    for addr in settings.addresses:
        sans.append(x509.IPAddress(ipaddress.ip_address(addr)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, settings.fqdn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LAB_CERT_DAYS))
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
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    _write_private(cert_file, cert_pem)
    return key_file.read_bytes(), cert_pem + ca_pem, ca_pem


# ----------------------------------------------------------------------------- the stage


def deploy(settings) -> list:
    """Install the host's certificate and key at CERT_PATH / KEY_PATH. Returns the ops that changed them."""
    server.group(name="TLS key readers group", group=TLS_GROUP, system=True)
    files.directory(name="TLS directory", path=TLS_DIR, user="root", group=TLS_GROUP, mode="750",
                    present=True)

    ops: list = []
    if settings.tls.mode == "lab":
        key_pem, chain_pem, ca_pem = ensure_lab_host_cert(settings)
        # checked_file(secret=True), not files.put: pyinfra's --diff would print a files.put source (the key).
        # the daemons' pending markers are written with the files: an interrupted run still restarts them next time
        ops.append(checked_file(name="TLS private key (lab CA)", content=key_pem, dest=KEY_PATH,
                                user="root", group=TLS_GROUP, mode="640", restarts=CERT_USERS, secret=True))
        ops.append(checked_file(name="TLS certificate chain (lab CA)", content=chain_pem, dest=CERT_PATH,
                                user="root", group="root", mode="644", restarts=CERT_USERS, secret=False))
        trust = files.put(name="Trust the lab CA on the host", src=BytesIO(ca_pem), dest=LAB_CA_TRUST_PATH,
                          user="root", group="root", mode="644")
        server.shell(name="Update the host's CA bundle", commands=["update-ca-certificates >/dev/null"],
                     _if=trust.did_change)
    elif settings.tls.mode == "acme":
        try:
            from tasks import acme  # later work: ACME issuance (same two files, same group)
        except ImportError:
            raise RuntimeError(
                "tls.mode = 'acme' is not implemented yet (tasks/acme.py is missing); "
                "use tls = {'mode': 'lab'} for now"
            ) from None
        ops.extend(acme.deploy(settings, cert_path=CERT_PATH, key_path=KEY_PATH, key_group=TLS_GROUP) or [])
    else:  # pragma: no cover - the settings model allows only the two
        raise ValueError(f"unknown tls.mode {settings.tls.mode!r}")
    _changed[host.name] = ops
    return ops
