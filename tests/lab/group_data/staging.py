from mailstead.labdata import lab_users as _lab_users

domains = ["staging.test"]
admin_email = "postmaster@staging.test"
users = _lab_users("staging.test")
aliases = {
    "postmaster@staging.test": ["alice@staging.test"],
    "abuse@staging.test": ["alice@staging.test"],
    "team@staging.test": ["alice@staging.test", "bob@staging.test"],
}
