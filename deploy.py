"""mailstead: `pyinfra inventory.py deploy.py` — base → tls → certificates → mail users → OpenSMTPD → Dovecot → dkim
→ web → dns → certificate issue.

pyinfra runs this file once per host. Every stage is ``tasks.<stage>.deploy(settings, env, results)``: the
host's validated Settings (the inventory already validated all of them before connecting), its environment's
EnvironmentSettings (built here from every host of the inventory pyinfra was given, whatever --limit says),
and the Results that earlier stages of this host's run hand on to later ones (e.g. "the certificate changed").
"""

from pyinfra import host, inventory

from mailstead.inventory import environments
from mailstead.settings import from_host
from tasks import base, certificate_issue, certificates, dkim, dns, dovecot, mailusers, nginx, opensmtpd, tls
from tasks.common import Results

settings = from_host(host)
env = environments(inventory)[settings.environment]
results = Results()

# The host's roles decide its stages, here and nowhere else; every stage has the same signature.
stages = [base]
if settings.is_mailserver:
    stages += [tls, certificates, mailusers, opensmtpd, dovecot, dkim, nginx]
stages.append(dns)  # planned on every host, applied by one host per environment (dns.is_dns_host)
if settings.is_mailserver:
    stages.append(certificate_issue)  # the first ACME certificate needs nginx (HTTP-01) and the names in DNS

# pyinfra identifies an operation by the line numbers of its call stack only (not the file names), so two
# stages' operations at the same lines would be "the same operation" and hosts with different stage lists (a
# trap, an acme-mode host) would order them differently (a cycle in pyinfra's DAG). host.loop adds the stage's
# fixed position in ALL_STAGES to every operation's identity.
ALL_STAGES = (base, tls, certificates, mailusers, opensmtpd, dovecot, dkim, nginx, dns, certificate_issue)
for stage in host.loop(ALL_STAGES):
    if stage in stages:
        stage.deploy(settings, env, results)
