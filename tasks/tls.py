"""TLS for every daemon: one certificate + key at a fixed place, whoever issues it.

Daemons (Dovecot, OpenSMTPD, later nginx) read only

    /etc/mailstead/tls/fullchain.pem   leaf + intermediates, 0644 root:root
    /etc/mailstead/tls/privkey.pem     0640 root:mailstead-tls

Dovecot and smtpd load them as root at start, so the group is only for unprivileged readers added later
(add their user to ``mailstead-tls``). Which issuer fills them is ``settings.tls.mode``:

- ``lab``: the private CA of ``mailstead.pki`` on the deploy machine (``<secrets_dir>/lab-ca/`` or
  ``tls.lab_ca_dir``) issues the host's key and certificate; this stage uploads them. The CA certificate is
  also installed in the host's trust store. A ``--dry`` run creates nothing there: it says what the real
  run would create and uploads only what already exists.
- ``acme``: tasks.certificates (the next stage) installs the key and the host's own ACME client, which writes
  the chain; tasks.certificate_issue gets the first certificate at the end of the deploy.

``deploy`` leaves in ``results.tls_changed`` the operations whose change means "certificate replaced": the
daemon stages after it restart/reload on them.
"""

from __future__ import annotations

from io import BytesIO

from pyinfra.operations import files, server

from mailstead import pki
from tasks.common import checked_file, dry_run, ensure_directory, put_file, would_create

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

def deploy(settings, env, results) -> None:
    """Install the host's certificate and key at CERT_PATH / KEY_PATH. Returns the ops that changed them."""
    server.group(name="TLS key readers group", group=TLS_GROUP, system=True)
    ensure_directory(name="TLS directory", path=TLS_DIR, user="root", group=TLS_GROUP, mode="750",
                    present=True)

    ops: list = []
    if settings.tls.mode == "lab":
        dry = dry_run()
        cert = pki.host_cert(pki.ca_dir(settings, env), settings.fqdn, pki.host_names(settings, env), settings.addresses,
                             write=not dry)
        if dry and cert.created:  # nothing made on the deploy machine, so nothing to upload yet
            for what in cert.created:
                would_create(what)
        else:
            # checked_file(secret=True), not files.put: pyinfra's --diff would print a files.put source (the key).
            # the daemons' pending markers are written with the files: an interrupted run still restarts them
            # next time
            ops.append(checked_file(name="TLS private key (lab CA)", content=cert.key_pem, dest=KEY_PATH,
                                    user="root", group=TLS_GROUP, mode="640", restarts=CERT_USERS, secret=True))
            ops.append(checked_file(name="TLS certificate chain (lab CA)", content=cert.chain_pem, dest=CERT_PATH,
                                    user="root", group="root", mode="644", restarts=CERT_USERS, secret=False))
            trust = put_file(name="Trust the lab CA on the host", src=BytesIO(cert.ca_pem),
                              dest=LAB_CA_TRUST_PATH, user="root", group="root", mode="644")
            server.shell(name="Update the host's CA bundle", commands=["update-ca-certificates >/dev/null"],
                         _if=trust.did_change)
    elif settings.tls.mode == "acme":
        pass  # tasks.certificates (the next stage) installs the key, the ACME client and, on a fresh host, a placeholder
    else:  # pragma: no cover - the settings model allows only the two
        raise ValueError(f"unknown tls.mode {settings.tls.mode!r}")
    results.tls_changed = ops
