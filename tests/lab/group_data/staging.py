# The lab's staging environment (mail.staging.test); read after group_data/staging.py, so these values win.
from labdata import lab_users

environment = "staging"
domains = ["staging.test"]
admin_email = "postmaster@staging.test"
users = lab_users("staging.test")
aliases = {
    "postmaster@staging.test": ["alice@staging.test"],
    "abuse@staging.test": ["alice@staging.test"],
    "team@staging.test": ["alice@staging.test", "bob@staging.test"],
    # forwards to the other environment (SRS, and relayed mail is not signed as ours: tests/lab/test_filtering.py)
    "fwd@staging.test": ["bob@production.test"],
}
