# The lab's production environment (mail.production.test and two spamtraps); read after
# group_data/production.py, so these values win.
from labdata import lab_users, state

# Certificates from the lab's ACME CA (pebble on infra.lab.test), renewed on the host like Let's Encrypt's.
tls = {
    "mode": "acme",
    "acme_directory": state()["acme"]["directory"],
    "acme_ca_bundle": state()["acme"]["ca_bundle"],  # the world CA that certifies pebble's HTTPS listener
    "trusted_by_senders": True,
}

environment = "production"
domains = ["production.test"]
admin_email = "postmaster@production.test"
users = lab_users("production.test")
aliases = {
    "postmaster@production.test": ["alice@production.test"],
    "abuse@production.test": ["alice@production.test"],
    "team@production.test": ["alice@production.test", "bob@production.test"],
}
