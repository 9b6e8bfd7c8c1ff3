# The staging environment: a separate domain on its own server, where changes are tried first.
environment = "staging"
domains = ["staging.example.org"]
admin_email = "postmaster@staging.example.org"
# users = [{"address": "alice@staging.example.org", "password_hash": "<python -m mailstead hash-password>"}]
users = []
aliases = {}
