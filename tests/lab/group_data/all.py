# Lab settings shared by every lab host (tests/lab/inventory.py). pyinfra reads them after group_data/all.py,
# so these values win: the real deploy runs with lab services — the lab CA instead of Let's Encrypt, the lab's
# PowerDNS as DNS provider, lab resolvers and time servers. Values come from `labctl status --json`.
from os import environ as _environ

from labdata import state

# MAILSTEAD_LAB_SECRETS_DIR: another secrets directory for one run (tests/lab/test_deploy_dry.py)
secrets_dir = _environ.get("MAILSTEAD_LAB_SECRETS_DIR") or state()["state_dir"] + "/secrets"
tls = {"mode": "lab"}
dns = {
    "provider": "powerdns",
    "api_url": state()["pdns"]["api_url"],
    "secret_file": state()["pdns"]["api_key_file"],
}
dns_ttl = 60
ntp_servers = ["infra.lab.test"]  # the lab's NTS server, certified by the lab's world CA
ntp_trusted_certs = state()["state_dir"] + "/world-ca/ca.pem"
chrony_set_clock = False  # never let a container set this machine's clock
resolver_forwarders = [state()["gateway"]["ipv4"]]
resolver_insecure_domains = ["test"]
# `python -m mailstead check`: the lab's outside world has no DNS blocklist to ask (its resolver answers .test
# names only)
check = {"dnsbl_zones": []}
# Backups of the lab's mail hosts go to an SFTP repository on the infra host (the tests authorize each host's
# key there: tests/lab/helpers.py authorize_backup_keys)
backup = {"repository": "sftp:restic@infra.lab.test:/srv/restic/{fqdn}"}
