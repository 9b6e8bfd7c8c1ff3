# Lab settings shared by every lab host. They are applied as host data on top of group_data/ by
# mailstead/labdata.py (same keys as group_data/), so the lab runs the real deploy with lab services:
# the lab CA instead of Let's Encrypt, the lab's PowerDNS as DNS provider, lab resolvers and time servers.
from os import environ as _environ

from mailstead.labdata import state as _state

_lab = _state()

# MAILSTEAD_LAB_SECRETS_DIR: another secrets directory for one run (tests/lab/test_deploy_dry.py)
secrets_dir = _environ.get("MAILSTEAD_LAB_SECRETS_DIR") or _lab["state_dir"] + "/secrets"
tls = {"mode": "lab"}
dns = {
    "provider": "powerdns",
    "api_url": _lab["pdns"]["api_url"],
    "secret_file": _lab["pdns"]["api_key_file"],
}
dns_ttl = 60
ntp_servers = ["infra.lab.test"]  # the lab's NTS server, certified by the lab's world CA
ntp_trusted_certs = _lab["state_dir"] + "/world-ca/ca.pem"
chrony_set_clock = False  # never let a container set this machine's clock
resolver_forwarders = [_lab["gateway"]["ipv4"]]
resolver_insecure_domains = ["test"]
