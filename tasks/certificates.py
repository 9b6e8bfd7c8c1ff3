"""Certificates from an ACME CA (``tls.mode = 'acme'``, Let's Encrypt by default): issued and renewed on the
host by mailstead's own ACME client (``mailstead/acme``), which this stage installs.

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
    mailstead-acme.service / .timer (twice a day, random delay);
  - dns-01 (``tls.acme_challenge``): also the DNS provider adapters (DNS01_MODULES) and the provider's
    credential (/etc/mailstead/acme-dns.secret, 0600 root; removed again with http-01).
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
from pyinfra.operations import apt, server, systemd

from mailstead import acme_keys
from mailstead.acme.renewal import cert_names
from mailstead.dns.providers import read_secret
from mailstead.secrets import project_path
from tasks.common import (DAEMON_RELOAD, absent_file, checked_file, dry_run, ensure_directory, mark_pending,
                          run_pending, would_create)
from tasks.tls import CERT_PATH, CERT_USERS, KEY_PATH, TLS_GROUP

LIB_DIR = "/usr/local/lib/mailstead"
CONFIG = "/etc/mailstead/acme.json"
STATE_DIR = "/var/lib/mailstead/acme"
ACCOUNT_KEY = f"{STATE_DIR}/account.key"
STATE_FILE = f"{STATE_DIR}/state.json"
RENEW_NOW = f"{STATE_DIR}/renew-now"
CA_BUNDLE = "/etc/mailstead/acme-ca.pem"
DNS_SECRET = "/etc/mailstead/acme-dns.secret"  # dns-01: the DNS provider's credential, root only
# dns-01: the DNS provider adapters and what they import (no pydantic, no pyinfra), copied next to the client
DNS01_MODULES = ("__init__.py", "acme_keys.py", "secrets.py", "urls.py", "dkim.py", "pki.py", "policies.py",
                 "dns/__init__.py", "dns/plan.py", "dns/records.py", "dns/providers/__init__.py",
                 "dns/providers/base.py",
                 "dns/providers/powerdns.py", "dns/providers/rfc2136.py", "dns/providers/hetzner.py",
                 "dns/providers/cloudflare.py", "dns/providers/desec.py")
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


def zone_of(name: str, env) -> str:
    """The zone that holds ``name``'s _acme-challenge record: dns.zone if set, else the longest mail domain
    it is under, else its parent domain."""
    if env.dns.zone:
        return env.dns.zone.rstrip(".").lower()
    under = [d for d in env.domains if name == d or name.endswith("." + d)]
    return max(under, key=len) if under else name.split(".", 1)[1]


def client_config(settings, env) -> dict:
    """The host's /etc/mailstead/acme.json."""
    names = cert_names(settings.fqdn, env.domains)
    dns = None
    if settings.tls.acme_challenge == "dns-01":
        d = env.dns
        dns = {"provider": d.provider, "api_url": d.api_url, "server_id": d.server_id, "server": d.server,
               "port": d.port, "tsig_key_name": d.tsig_key_name, "tsig_algorithm": d.tsig_algorithm,
               "secret_file": DNS_SECRET, "secret_env": None, "zones": {n: zone_of(n, env) for n in names}}
    return {
        "directory": settings.tls.acme_directory,
        "ca_bundle": CA_BUNDLE if settings.tls.acme_ca_bundle else None,
        "contact": settings.tls.acme_email or env.admin_email,
        "profile": settings.tls.acme_profile,
        "challenge": settings.tls.acme_challenge,
        "webroot": WEBROOT,
        "names": names,
        "dns": dns,
        "account_key": ACCOUNT_KEY,
        "cert_key": KEY_PATH,
        "cert": CERT_PATH,
        "state": STATE_FILE,
        "renew_now": RENEW_NOW,
        "reload": RELOAD,
        "wait_dns": 120,
    }


def _client_files(dns01: bool) -> dict[str, bytes]:
    """The client package as the host gets it: mailstead/__init__.py + mailstead/acme/*.py, and for dns-01
    the DNS provider adapters with the modules they import."""
    pkg = resources.files("mailstead")
    out = {"mailstead/__init__.py": pkg.joinpath("__init__.py").read_bytes()}
    for f in sorted(pkg.joinpath("acme").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".py"):
            out[f"mailstead/acme/{f.name}"] = f.read_bytes()
    if dns01:
        for rel in DNS01_MODULES:
            out[f"mailstead/{rel}"] = pkg.joinpath(rel).read_bytes()
    return out


def deploy(settings, env, results) -> None:
    """Everything but the issuance (see the module docstring), in acme mode. Adds the ops that replaced the
    certificate or its key to ``results.tls_changed`` (the daemons restart on them) and the ops that change
    what the client must get to ``results.acme_changed`` (tasks.certificate_issue runs the client on them)."""
    if settings.tls.mode != "acme":
        return
    dns01 = settings.tls.acme_challenge == "dns-01"
    apt.packages(name="ACME client: python3-acme, python3-cryptography",
                 packages=["python3-acme", "python3-cryptography", "openssl",
                           *(["python3-requests", "python3-dnspython"] if dns01 else [])], no_recommends=True)
    client_files = _client_files(dns01)
    dirs = sorted({f"{LIB_DIR}/{rel}".rsplit("/", 1)[0] for rel in client_files})
    for d, mode in ((STATE_DIR, "700"), (WEBROOT, "755"), (f"{WEBROOT}/.well-known", "755"),
                    (f"{WEBROOT}/.well-known/acme-challenge", "755"), (LIB_DIR, "755"), *((d, "755") for d in dirs)):
        ensure_directory(name=f"ACME: {d}", path=d, user="root", group="root", mode=mode)
    for rel, data in client_files.items():
        checked_file(name=f"ACME client: {LIB_DIR}/{rel}", dest=f"{LIB_DIR}/{rel}", content=data, mode="644",
                     secret=False)

    ops: list = []
    dry = dry_run()
    ident = acme_keys.identity(env.secrets_dir, settings.fqdn, write=not dry)
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
    if dns01:  # the provider's credential on the host, root only (never printed: secret=True)
        changed.append(checked_file(name="ACME dns-01: DNS provider credential", dest=DNS_SECRET, mode="600",
                                    content=read_secret(env.dns, env.secrets_dir), secret=True))
    else:
        absent_file(name="ACME dns-01: no DNS provider credential on the host", path=DNS_SECRET)
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
