"""mailstead: `pyinfra inventory.py deploy.py` — the host's stages in STAGE_ORDER (base → tls → certificates →
mail users → dkim → unbound → rspamd → OpenSMTPD → Dovecot → web → trap feed → backup → spamtrap → firewall →
brute-force → dns → certificate issue), those its roles need.

pyinfra runs this file once per host. Every stage is ``tasks.<stage>.deploy(settings, env, results)``: the
host's validated Settings (the inventory already validated all of them before connecting), its environment's
EnvironmentSettings (its group data and every host of the inventory pyinfra was given, whatever --limit says),
and the Results that earlier stages of this host's run hand on to later ones (e.g. "the certificate changed").
"""

import os

from pyinfra import host, inventory

from mailstead.inventory import environments
from mailstead.settings import from_host
from tasks import (
    backup,
    base,
    bruteforce,
    certificate_issue,
    certificates,
    dkim,
    dns,
    dovecot,
    firewall,
    mailusers,
    nginx,
    opensmtpd,
    rspamd,
    spamtrap,
    tls,
    trapfeed,
    unbound,
)
from tasks import factcache
from tasks.common import Results

factcache.install()  # facts read once while nothing changes, planned ones in one command (tasks/factcache.py)

settings = from_host(host)
env = environments(inventory)[settings.environment]
results = Results()

# The host's roles decide its stages, here and nowhere else; every stage has the same signature.
stages = [base]
if settings.is_mailserver:
    stages += [tls, certificates, mailusers, dkim, unbound, rspamd, opensmtpd, dovecot, nginx, trapfeed, backup]
if settings.is_spamtrap:
    stages.append(spamtrap)
stages.append(firewall)  # after the stages whose ports (results.open_ports) it opens
stages.append(bruteforce)  # jails for the ports the host serves
stages.append(dns)  # planned on every host, applied by one host per environment (dns.is_dns_host)
if settings.is_mailserver:
    stages.append(certificate_issue)  # the first ACME certificate needs nginx (HTTP-01) and the names in DNS

# MAILSTEAD_STAGES=opensmtpd,dovecot: only those of the host's stages (the day-2 commands' quick deploys)
if os.environ.get("MAILSTEAD_STAGES"):
    only = os.environ["MAILSTEAD_STAGES"].split(",")
    names = [s.__name__.rsplit(".", 1)[-1] for s in stages]
    if unknown := [n for n in only if n not in names]:
        raise SystemExit(f"MAILSTEAD_STAGES: {', '.join(unknown)}: not a stage of this host ({', '.join(names)})")
    skipped = [s for s, n in zip(stages, names) if n not in only]
    stages = [s for s, n in zip(stages, names) if n in only]
else:
    skipped = []

# pyinfra identifies an operation by the line numbers of its call stack, the same on every host: hosts with
# different stage lists would otherwise share operations of different stages (same line numbers in two
# modules) in opposite orders, a cycle in pyinfra's DAG. host.loop adds the stage's place in STAGE_ORDER to
# that identity.
STAGE_ORDER = (base, tls, certificates, mailusers, dkim, unbound, rspamd, opensmtpd, dovecot, nginx, trapfeed,
               backup, spamtrap, firewall, bruteforce, dns, certificate_issue)
if [s for s in STAGE_ORDER if s in stages] != stages:
    raise RuntimeError("deploy.py: every stage must be in STAGE_ORDER, in the same order as in the stage list")
for stage in host.loop(STAGE_ORDER):
    if stage in stages:
        stage.deploy(settings, env, results)
    elif stage in skipped and hasattr(stage, "hand_on"):  # a skipped stage still hands on what later ones read
        stage.hand_on(results)
