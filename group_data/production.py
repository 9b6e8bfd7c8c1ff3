# The production environment.
environment = "production"
domains = ["example.org"]
admin_email = "postmaster@example.org"
# users = [{"address": "alice@example.org", "password_hash": "<python -m mailstead hash-password>", "quota": "5G"}]
users = []
aliases = {}
