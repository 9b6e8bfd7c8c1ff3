# Settings shared by every host. Environment files (staging.py, production.py) and role files
# (mailservers.py, spamtraps.py) override these; host data in inventory.py overrides everything.
# Every key is documented in README.md ("Settings reference"); a typo or a bad value stops the run
# before any host is touched.

# Where DKIM keys, the lab CA and provider credentials live on the deploy machine (outside git; back it up).
secrets_dir = "secrets"

# Certificates: "lab" = a private CA kept in secrets_dir (lab-ca/). "acme" (Let's Encrypt) is not available
# in this version yet.
tls = {"mode": "lab"}

# DNS provider that receives the computed records. "none" only prints what to publish.
# Example: {"provider": "powerdns", "api_url": "https://ns.example.org:8081", "secret_file": "pdns-api-key"}
dns = {"provider": "none"}

# Time from NTS-authenticated servers (chrony); the default list is in the settings reference (ntp_servers).
# ntp_servers = ["nts.example.net"]

# Unbound resolves by itself (full recursion, DNSSEC-validating) unless forwarders are given.
resolver_forwarders = []
