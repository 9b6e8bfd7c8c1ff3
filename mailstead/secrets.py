"""The secrets directory on the deploy machine: what is kept where, and the one writer of private files.

``secrets_dir`` (a setting; relative to the project directory unless absolute) holds, directories 0700 and
files 0600:

  dkim/<domain>/index.json             the domain's DKIM selectors and their states (mailstead/dkim.py)
  dkim/<domain>/<selector>.key         one DKIM private key
  dns/<environment>/<zone>.json        what mailstead published in the zone (mailstead/dns/plan.py)
  lab-ca/ca.key, lab-ca/ca.crt         the private CA of tls.mode 'lab' (mailstead/pki.py); the setting
                                       tls.lab_ca_dir puts this directory elsewhere
  lab-ca/hosts/<fqdn>.key, .crt        a host's TLS key and the certificate the CA issued for it
  acme/<fqdn>/account.key              tls.mode 'acme': the host's ACME account key (RSA; the account is found
                                       again by it, so a rebuilt host never registers twice)
  acme/<fqdn>/cert.key                 tls.mode 'acme': the host's certificate key (EC P-256), reused by every
                                       renewal (a TLSA 3 1 1 record pins it)
  tls/<fqdn>.spki-sha256               optional, written by hand: the host's TLSA 3 1 1 hashes (hex, one per line)
  backup/<fqdn>.password, .ssh-key     a mail host's restic repository password and SFTP key (made by the deploy)
  backup/[<fqdn>.]s3-credentials       written by the operator: the access key of an S3 backup repository
  <dns.secret_file>                    the DNS provider's credential, when given as a relative file name

Everything mailstead writes there goes through ``write_private``: the file is made 0600 from the start, under a
temporary name in the same directory, and renamed over the old one only once it is complete, so a reader sees
the old file or the new one, never a part, and a failed write leaves the old file as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mailstead import PROJECT_DIR


def secrets_root(secrets_dir: str | os.PathLike) -> Path:
    """``secrets_dir`` as an absolute path; a relative one is relative to the project directory, so files land
    in the same place whatever the current directory is."""
    p = Path(secrets_dir)
    return p if p.is_absolute() else PROJECT_DIR / p


def project_path(path: str | os.PathLike) -> Path:
    """A path setting on the deploy machine: relative ones are relative to the project directory."""
    p = Path(path)
    return p if p.is_absolute() else PROJECT_DIR / p


# ------------------------------------------------------------------------------------------ layout
def dkim_dir(secrets_dir: str | os.PathLike, domain: str) -> Path:
    return secrets_root(secrets_dir) / "dkim" / domain.lower().rstrip(".")


def dns_state_file(secrets_dir: str | os.PathLike, environment: str, zone: str) -> Path:
    """``zone`` as the DNS code normalises it (lower case, no trailing dot)."""
    return secrets_root(secrets_dir) / "dns" / environment / f"{zone}.json"


def lab_ca_dir(secrets_dir: str | os.PathLike, override: str | os.PathLike | None = None) -> Path:
    """The lab CA's directory: ``override`` (the tls.lab_ca_dir setting) if given, else ``<secrets>/lab-ca``."""
    return project_path(override) if override else secrets_root(secrets_dir) / "lab-ca"


def ca_key_file(ca_dir: Path) -> Path:
    return ca_dir / "ca.key"


def ca_cert_file(ca_dir: Path) -> Path:
    return ca_dir / "ca.crt"


def host_key_file(ca_dir: Path, fqdn: str) -> Path:
    return ca_dir / "hosts" / f"{fqdn}.key"


def host_cert_file(ca_dir: Path, fqdn: str) -> Path:
    return ca_dir / "hosts" / f"{fqdn}.crt"


def acme_dir(secrets_dir: str | os.PathLike, fqdn: str) -> Path:
    """The host's ACME identity: account.key and cert.key."""
    return secrets_root(secrets_dir) / "acme" / fqdn.lower().rstrip(".")


def spki_hash_file(secrets_dir: str | os.PathLike, fqdn: str) -> Path:
    return secrets_root(secrets_dir) / "tls" / f"{fqdn}.spki-sha256"


def backup_password_file(secrets_dir: str | os.PathLike, fqdn: str) -> Path:
    """The restic repository password of a mail host's backups."""
    return secrets_root(secrets_dir) / "backup" / f"{fqdn}.password"


def backup_ssh_key_file(secrets_dir: str | os.PathLike, fqdn: str) -> Path:
    """The SSH key (OpenSSH format; its public half next to it as .pub) a mail host reaches an SFTP repository
    with: kept here so that a rebuilt host keeps its access."""
    return secrets_root(secrets_dir) / "backup" / f"{fqdn}.ssh-key"


def backup_s3_credentials_file(secrets_dir: str | os.PathLike, fqdn: str) -> Path:
    """The access key of an S3-compatible backup repository: `backup/<fqdn>.s3-credentials` when that host has
    one of its own, else `backup/s3-credentials` (one key for every mail host)."""
    own = secrets_root(secrets_dir) / "backup" / f"{fqdn}.s3-credentials"
    return own if own.exists() else secrets_root(secrets_dir) / "backup" / "s3-credentials"


def credential_file(secrets_dir: str | os.PathLike, name: str | os.PathLike) -> Path:
    """A credential file setting: absolute, or relative to the secrets directory."""
    return Path(name) if os.path.isabs(name) else secrets_root(secrets_dir) / name


# ------------------------------------------------------------------------------------------ writing
def private_dir(path: Path) -> None:
    """``path`` and every missing parent made with mode 0700; ``path`` itself set to 0700 if it existed."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another writer
            pass
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
    os.chmod(path, 0o700)


def write_private(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``path`` atomically with mode 0600 (missing directories are made 0700).

    The content goes to a temporary file in the same directory (0600 from its creation), is flushed to disk,
    and replaces ``path`` by a rename; on any error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    if not path.parent.exists():
        private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
