"""The lab's "outside world" PKI: one CA that lab infrastructure services (NTS time server, later the ACME
CA's own HTTPS endpoint) present certificates from, the way real services present publicly trusted ones.

Made with the openssl command on this machine, kept in the lab's state dir (never in git), created once.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def ca_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "world-ca"


def ensure_ca(state_dir: Path) -> Path:
    """The CA certificate's path (creating the CA on first use)."""
    d = ca_dir(state_dir)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = d / "ca.pem", d / "ca.key"
    if not (cert.exists() and key.exists()):
        old = os.umask(0o077)
        try:
            _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", str(key), "-out", str(cert), "-days", "3650",
                     "-subj", "/CN=mailstead lab world CA",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        finally:
            os.umask(old)
        cert.chmod(0o644)
    return cert


def ensure_leaf(state_dir: Path, name: str, dns_names: list[str]) -> tuple[str, str]:
    """(certificate PEM, key PEM) for `name`, signed by the lab world CA; made once, reused."""
    ca = ensure_ca(state_dir)
    d = ca_dir(state_dir)
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    if not (cert.exists() and key.exists()):
        old = os.umask(0o077)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
                ext.write_text("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
                               "subjectAltName=" + ",".join(f"DNS:{n}" for n in dns_names) + "\n")
                _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                         "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={dns_names[0]}")
                _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(d / "ca.key"),
                         "-CAcreateserial", "-days", "825", "-out", str(cert), "-extfile", str(ext))
        finally:
            os.umask(old)
    return cert.read_text(), key.read_text()
