"""Certificates from an ACME CA (``tls.mode = 'acme'``, Let's Encrypt by default): installed by the TLS stage,
issued and renewed on the host by mailstead's own ACME client (``mailstead/acme``).

Two stages, because the first certificate needs things later stages make (nginx on port 80, the host's names
in DNS):

``tasks.certificates`` (this module), right after tasks.tls, before the daemons' stages (acme mode only):
  - Debian's python3-acme + python3-cryptography; the client package copied to /usr/local/lib/mailstead/;
  - the host's identity from the deploy machine's secrets_dir (``mailstead.acme_keys``, made on first use):
    the account key (/var/lib/mailstead/acme/account.key, 0600) and the certificate key at the fixed
    KEY_PATH every daemon reads — the same key for every renewal (DANE);
  - a short-lived self-signed placeholder at CERT_PATH when there is no certificate yet, so the daemons start
    (replaced by the CA's certificate at the end of the same deploy);
  - /etc/mailstead/acme.json (directory, contact, names, profile, webroot, what to reload) and the
    mailstead-acme.service / .timer (twice a day, random delay).
``tasks.certificate_issue``, the last stage, after DNS published the host's names: runs the client
  once when the host has no certificate from this CA, its names or key changed, or it is due (the ``AcmeDue``
  fact asks the client itself, ARI included). Nothing due: no operation, so a second deploy changes nothing.
"""

from __future__ import annotations

import json
import shlex
from importlib import resources

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server, systemd

from mailstead import acme_keys
from mailstead.acme.renewal import cert_names
from mailstead.secrets import project_path
from tasks.common import DAEMON_RELOAD, checked_file, dry_run, mark_pending, run_pending, would_create
from tasks.tls import CERT_PATH, CERT_USERS, KEY_PATH, TLS_GROUP

LIB_DIR = "/usr/local/lib/mailstead"
CONFIG = "/etc/mailstead/acme.json"
STATE_DIR = "/var/lib/mailstead/acme"
ACCOUNT_KEY = f"{STATE_DIR}/account.key"
STATE_FILE = f"{STATE_DIR}/state.json"
RENEW_NOW = f"{STATE_DIR}/renew-now"
CA_BUNDLE = "/etc/mailstead/acme-ca.pem"
WEBROOT = "/var/www/acme"  # nginx serves /.well-known/acme-challenge/ from here on port 80
SERVICE = "mailstead-acme"
RANDOM_DELAY = "4h"
# after a new certificate: smtpd reads it only at start; Dovecot and nginx on reload
RELOAD = [["systemctl", "try-restart", "opensmtpd"], ["systemctl", "try-reload-or-restart", "dovecot"],
          ["systemctl", "try-reload-or-restart", "nginx"]]
RUN = f"PYTHONPATH={LIB_DIR} /usr/bin/python3 -m mailstead.acme"


class AcmeDue(FactBase):
    """What the host's client says: "ok" (the certificate is current) or "due: <reason>"; "due: not
    installed" before the client and its configuration are there."""

    def command(self):
        return (f"if [ -f {CONFIG} ] && [ -f {LIB_DIR}/mailstead/acme/__main__.py ]; then {RUN} due "
                f"--config {CONFIG} 2>/dev/null || echo 'due: the client failed'; else echo 'due: not installed'; fi")

    def process(self, output):
        return "\n".join(output).strip().splitlines()[-1] if output else "due: no answer"


def client_config(settings, env) -> dict:
    """The host's /etc/mailstead/acme.json."""
    return {
        "directory": settings.tls.acme_directory,
        "ca_bundle": CA_BUNDLE if settings.tls.acme_ca_bundle else None,
        "contact": settings.tls.acme_email or env.admin_email,
        "profile": settings.tls.acme_profile,
        "challenge": settings.tls.acme_challenge,
        "webroot": WEBROOT,
        "names": cert_names(settings.fqdn, env.domains),
        "account_key": ACCOUNT_KEY,
        "cert_key": KEY_PATH,
        "cert": CERT_PATH,
        "state": STATE_FILE,
        "renew_now": RENEW_NOW,
        "reload": RELOAD,
        "wait_dns": 120,
    }


def _client_files() -> dict[str, bytes]:
    """The client package as the host gets it: mailstead/__init__.py (empty) + mailstead/acme/*.py."""
    pkg = resources.files("mailstead.acme")
    out = {"mailstead/__init__.py": b'"""Only the host-side ACME client of mailstead (mailstead/acme)."""\n'}
    for f in sorted(pkg.iterdir(), key=lambda p: p.name):
        if f.name.endswith(".py"):
            out[f"mailstead/acme/{f.name}"] = f.read_bytes()
    return out


def deploy(settings, env, results) -> None:
    """Everything but the issuance (see the module docstring), in acme mode. Adds the ops that replaced the
    certificate or its key to ``results.tls_changed`` (the daemons restart on them) and the ops that change
    what the client must get to ``results.acme_changed`` (tasks.certificate_issue runs the client on them)."""
    if settings.tls.mode != "acme":
        return
    packages = apt.packages(name="ACME client: python3-acme, python3-cryptography",
                            packages=["python3-acme", "python3-cryptography", "openssl"], no_recommends=True)
    for d, mode in ((STATE_DIR, "700"), (WEBROOT, "755"), (f"{WEBROOT}/.well-known", "755"),
                    (f"{WEBROOT}/.well-known/acme-challenge", "755"), (LIB_DIR, "755"), (f"{LIB_DIR}/mailstead", "755"),
                    (f"{LIB_DIR}/mailstead/acme", "755")):
        files.directory(name=f"ACME: {d}", path=d, user="root", group="root", mode=mode)
    code = [checked_file(name=f"ACME client: {LIB_DIR}/{rel}", dest=f"{LIB_DIR}/{rel}", content=data, mode="644",
                         secret=False) for rel, data in _client_files().items()]

    ops: list = []
    dry = dry_run()
    ident = acme_keys.identity(settings.secrets_dir, settings.fqdn, write=not dry)
    changed = []
    if dry and ident.created:
        for what in ident.created:
            would_create(what)
    else:
        changed.append(checked_file(name="ACME account key", dest=ACCOUNT_KEY, content=ident.account_key_pem,
                                    mode="600", secret=True))
        key = checked_file(name="TLS private key (ACME certificate key)", content=ident.cert_key_pem, dest=KEY_PATH,
                           user="root", group=TLS_GROUP, mode="640", restarts=CERT_USERS, secret=True)
        ops.append(key)
        changed.append(key)
        if not host.get_fact(File, path=CERT_PATH) or key.will_change:
            # (a new key, e.g. coming from tls.mode 'lab': the old certificate does not match it)
            # the daemons need a certificate to start; the CA's replaces it at the end of this deploy
            placeholder = server.shell(
                name="TLS: self-signed placeholder until the ACME CA's certificate arrives",
                commands=[f"openssl req -x509 -new -key {KEY_PATH} -subj /CN={shlex.quote(settings.fqdn)} -days 2 "
                          f"-out {CERT_PATH}.placeholder && chmod 644 {CERT_PATH}.placeholder && "
                          f"mv -f {CERT_PATH}.placeholder {CERT_PATH}"])
            mark_pending(list(CERT_USERS), ops=[placeholder])
            ops.append(placeholder)
    if settings.tls.acme_ca_bundle:
        changed.append(checked_file(name="ACME CA bundle", dest=CA_BUNDLE, secret=False, mode="644",
                                    content=project_path(settings.tls.acme_ca_bundle).read_bytes()))
    changed.append(checked_file(name="ACME client configuration", dest=CONFIG, secret=False, mode="644",
                                content=json.dumps(client_config(settings, env), indent=1) + "\n"))
    units = [
        checked_file(name=f"{SERVICE}.service", dest=f"/etc/systemd/system/{SERVICE}.service", secret=False,
                     src="acme/mailstead-acme.service.j2", context={"config": CONFIG, "lib": LIB_DIR},
                     restarts=DAEMON_RELOAD),
        checked_file(name=f"{SERVICE}.timer", dest=f"/etc/systemd/system/{SERVICE}.timer", secret=False,
                     src="acme/mailstead-acme.timer.j2", context={"random_delay": RANDOM_DELAY},
                     restarts=DAEMON_RELOAD),
    ]
    run_pending(name="systemd daemon-reload (mailstead-acme units)", marker=DAEMON_RELOAD,
                command="systemctl daemon-reload", ops=units)
    systemd.service(name=f"Enable and start {SERVICE}.timer", service=f"{SERVICE}.timer", running=True,
                    enabled=True)
    results.tls_changed = [*results.tls_changed, *ops]
    results.acme_changed = changed
