"""mailstead: `pyinfra inventory.py deploy.py` — base → tls → mail users → OpenSMTPD → Dovecot → dkim → web → backup
→ dns.

pyinfra runs this file once per host. Every stage is ``tasks.<stage>.deploy(settings, env, results)``: the
host's validated Settings (the inventory already validated all of them before connecting), its environment's
EnvironmentSettings (built here from every host of the inventory pyinfra was given, whatever --limit says),
and the Results that earlier stages of this host's run hand on to later ones (e.g. "the certificate changed").
"""

import os

from pyinfra import host, inventory

from mailstead.inventory import environments
from mailstead.settings import from_host
from tasks import backup, base, dkim, dns, dovecot, mailusers, nginx, opensmtpd, tls
from tasks.common import Results

settings = from_host(host)
env = environments(inventory)[settings.environment]
results = Results()

# The host's roles decide its stages, here and nowhere else; every stage has the same signature.
stages = [base]
if settings.is_mailserver:
    stages += [tls, mailusers, opensmtpd, dovecot, dkim, nginx, backup]
stages.append(dns)  # planned on every host, applied by one host per environment (dns.is_dns_host)

# MAILSTEAD_STAGES=opensmtpd,dovecot: only those of the host's stages (the day-2 commands' quick deploys)
if os.environ.get("MAILSTEAD_STAGES"):
    only = os.environ["MAILSTEAD_STAGES"].split(",")
    names = [s.__name__.rsplit(".", 1)[-1] for s in stages]
    if unknown := [n for n in only if n not in names]:
        raise SystemExit(f"MAILSTEAD_STAGES: {', '.join(unknown)}: not a stage of this host ({', '.join(names)})")
    stages = [s for s, n in zip(stages, names) if n in only]

for stage in stages:
    stage.deploy(settings, env, results)
