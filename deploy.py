"""mailstead: `pyinfra inventory.py deploy.py` — base → tls → mail core → filtering → spamtraps → dns.

pyinfra runs this file once per host; every stage is a function in tasks/ that reads one validated
Settings object (the inventory already validated all of them before connecting).
"""

from pyinfra import host

from mailstead.settings import Settings
from tasks import base

settings = Settings.from_host(host)

base.deploy(settings)
