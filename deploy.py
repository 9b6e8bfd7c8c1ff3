"""mailstead: `pyinfra inventory.py deploy.py` — base → tls → mail core → dkim → web → dns.

pyinfra runs this file once per host; every stage is a function in tasks/ that reads one validated
Settings object (the inventory already validated all of them before connecting).
"""

from pyinfra import host

from mailstead.settings import from_host
from tasks import base, dkim, dns, dovecot, nginx, opensmtpd, tls

settings = from_host(host)

base.deploy(settings)

if settings.is_mailserver:
    tls.deploy(settings)
    opensmtpd.deploy(settings)
    dovecot.deploy(settings)
    dkim.deploy(settings)
    nginx.deploy(settings, tls_changed=tls.changed_ops())

dns.deploy(settings)
