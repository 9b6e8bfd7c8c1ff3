"""mailstead: `pyinfra inventory.py deploy.py` — base → tls → mail core → dkim → web → dns.

pyinfra runs this file once per host; every stage is a function in tasks/ that reads one validated
Settings object (the inventory already validated all of them before connecting). Stages that need the
whole environment (the MTA-STS policy's MX set, the DNS records) get its EnvironmentSettings, built here
from every host of the inventory pyinfra was given (whatever --limit says).
"""

from pyinfra import host, inventory

from mailstead.inventory import environments
from mailstead.settings import from_host
from tasks import base, dkim, dns, dovecot, nginx, opensmtpd, tls

settings = from_host(host)
env = environments(inventory)[settings.environment]

base.deploy(settings)

if settings.is_mailserver:
    tls.deploy(settings)
    opensmtpd.deploy(settings)
    dovecot.deploy(settings)
    dkim.deploy(settings)
    nginx.deploy(settings, env, tls_changed=tls.changed_ops())

dns.deploy(settings, env)
