# The lab's production environment (mail.production.test and two spamtraps); read after
# group_data/production.py, so these values win.
from labdata import lab_users

environment = "production"
domains = ["production.test"]
admin_email = "postmaster@production.test"
users = lab_users("production.test")
aliases = {
    "postmaster@production.test": ["alice@production.test"],
    "abuse@production.test": ["alice@production.test"],
    "team@production.test": ["alice@production.test", "bob@production.test"],
}
