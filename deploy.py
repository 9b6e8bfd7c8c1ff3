"""mailstead: `pyinfra inventory.py deploy.py` — base → tls → mail users → OpenSMTPD → Dovecot → dkim → web → trap feed (mail hosts) | spamtrap (traps) → firewall → fail2ban → dns.

pyinfra runs this file once per host. Every stage is ``tasks.<stage>.deploy(settings, env, results)``: the
host's validated Settings (the inventory already validated all of them before connecting), its environment's
EnvironmentSettings (built here from every host of the inventory pyinfra was given, whatever --limit says),
and the Results that earlier stages of this host's run hand on to later ones (e.g. "the certificate changed").
"""

from pyinfra import host, inventory

from mailstead.inventory import environments
from mailstead.settings import from_host
from tasks import base, bruteforce, dkim, dns, dovecot, firewall, mailusers, nginx, opensmtpd, spamtrap, tls, trapfeed
from tasks.common import Results

settings = from_host(host)
env = environments(inventory)[settings.environment]
results = Results()

# The host's roles decide its stages, here and nowhere else; every stage has the same signature.
stages = [base]
if settings.is_mailserver:
    stages += [tls, mailusers, opensmtpd, dovecot, dkim, nginx, trapfeed]
if settings.is_spamtrap:
    stages.append(spamtrap)
stages.append(firewall)  # after the stages whose ports (results.open_ports) it opens
stages.append(bruteforce)  # jails for the ports the host serves
stages.append(dns)  # planned on every host, applied by one host per environment (dns.is_dns_host)

# pyinfra identifies an operation by the line numbers of its call stack, the same on every host: hosts with
# different stage lists would otherwise share operations of different stages (same line numbers in two
# modules) in opposite orders, a cycle. host.loop adds the stage's place in STAGE_ORDER to that identity.
STAGE_ORDER = (base, tls, mailusers, opensmtpd, dovecot, dkim, nginx, trapfeed, spamtrap, firewall, bruteforce,
               dns)
if [s for s in STAGE_ORDER if s in stages] != stages:
    raise RuntimeError("deploy.py: every stage must be in STAGE_ORDER, in the same order as in the stage list")
for stage in host.loop(STAGE_ORDER):
    if stage in stages:
        stage.deploy(settings, env, results)
