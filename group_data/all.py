# Settings shared by every host. Environment files (staging.py, production.py) and role files
# (mailservers.py, spamtraps.py) override these; host data in inventory.py overrides everything.
# Every key is documented in README.md ("Settings reference"); a typo or a bad value stops the run
# before any host is touched.

# Where DKIM keys, the lab CA and provider credentials live on the deploy machine (outside git; back it up).
secrets_dir = "secrets"

# Certificates: "acme" = Let's Encrypt, issued during the first deploy and renewed on the host by
# mailstead-acme.timer (port 80 must reach the host); "lab" = a private CA kept in secrets_dir (lab-ca/), for
# offline use (then mta_sts_mode must not be "enforce"). Try Let's Encrypt's staging CA first with
# tls = {"mode": "acme", "acme_directory": "https://acme-staging-v02.api.letsencrypt.org/directory"}
# (and mta_sts_mode = "testing").
tls = {"mode": "acme"}

# DNS provider that receives the computed records. "none" only prints what to publish.
# Example: {"provider": "powerdns", "api_url": "https://ns.example.org:8081", "secret_file": "pdns-api-key"}
dns = {"provider": "none"}

# Time from NTS-authenticated servers (chrony); the default list is in the settings reference (ntp_servers).
# ntp_servers = ["nts.example.net"]

# Unbound resolves by itself (full recursion, DNSSEC-validating) unless forwarders are given.
resolver_forwarders = []
