from mailstead.labdata import lab_users as _lab_users

domains = ["production.test"]
admin_email = "postmaster@production.test"
users = _lab_users("production.test")
aliases = {
    "postmaster@production.test": ["alice@production.test"],
    "abuse@production.test": ["alice@production.test"],
    "team@production.test": ["alice@production.test", "bob@production.test"],
}
