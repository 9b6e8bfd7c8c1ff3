# Lab settings shared by every lab host (tests/lab/inventory.py). pyinfra reads them after group_data/all.py,
# so these values win: the real deploy runs with lab services — the lab CA instead of Let's Encrypt, the lab's
# PowerDNS as DNS provider, lab resolvers and time servers. Values come from `labctl status --json`.
from os import environ as _environ

from labdata import state
from topology import OUTSIDE_ALT_V4 as _OUTSIDE_ALT_V4

# MAILSTEAD_LAB_SECRETS_DIR: another secrets directory for one run (tests/lab/test_deploy_dry.py)
secrets_dir = _environ.get("MAILSTEAD_LAB_SECRETS_DIR") or state()["state_dir"] + "/secrets"
# staging: the lab CA (the private-CA mode for offline use); production overrides it with the lab's ACME CA
# (pebble on infra). The lab's senders trust both, so MTA-STS enforce is fine here.
tls = {"mode": "lab", "trusted_by_senders": True}
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

# Unbound forwards to the lab's DNS; the lab's zones and its reverse zones (TEST-NET addresses, which Unbound
# answers itself by default) are unsigned
resolver_insecure_domains = ["test", "100.51.198.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"]
# Spam filtering with wide margins above what lab mail scores by itself (no PTR for outside clients, no outside DNS:
# up to ~10): the lab's own DNS blocklists (names under lab.test that tests/lab/test_filtering.py lists in PowerDNS)
# move a client into the greylist, Junk or reject range; the Junk test's client is never greylisted
rspamd = {
    "greylist_score": 20,
    "add_header_score": 40,
    "reject_score": 60,
    "greylist_timeout": 15,
    "greylist_whitelist": ["198.51.100.243"],
    "dnsbls": {"grey.dnsbl.lab.test": 25, "junk.dnsbl.lab.test": 45, "block.dnsbl.lab.test": 70},
}
# The suite's clients mostly connect from the gateway address (TLS scans open hundreds of connections in a
# minute): the per-source limits skip it. Tests of the limits use the outside pool addresses.
firewall = {"unmetered_sources": [state()["gateway"]["ipv4"], state()["gateway"]["ipv6"]]}
# Brute-force bans: short, so a test sees one end. Never banned: the gateway (deploys, the suite's clients)
# and the address test_smtp_auth.py guesses passwords from (it measures filter-authguard, not bans).
bruteforce = {"bantime": 20, "findtime": 120, "maxretry": 5,
              "ignore": [state()["gateway"]["ipv4"], state()["gateway"]["ipv6"], _OUTSIDE_ALT_V4]}
# `python -m mailstead check`: the lab's outside world has no DNS blocklist to ask (its resolver answers .test
# names only)
check = {"dnsbl_zones": []}
# Backups of the lab's mail hosts go to an SFTP repository on the infra host (the tests authorize each host's
# key there: tests/lab/helpers.py authorize_backup_keys)
backup = {"repository": "sftp:restic@infra.lab.test:/srv/restic/{fqdn}"}
