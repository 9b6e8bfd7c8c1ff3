"""Hostile group_data values: each is refused by mailstead.inventory.check (what inventory.py calls before pyinfra
connects), with one line naming the file, the field and a fix, showing the value escaped (a newline in it never
breaks the line) and never echoing a secret.

Why these matter: addresses end up in OpenSMTPD's tables (a '|cmd' target runs a command, a '/file' target writes
a file), names and versions in chrony.conf, apt sources and build commands, where a newline starts a new directive.
"""

from __future__ import annotations

import re

import bcrypt
import pytest

from mailstead.passwords import MIN_COST, hash_password
from mailstead.settings import HASH_PATTERNS

PROD = "group_data/production.py"
ALL = "group_data/all.py"
MX1_HOST_DATA = "host data of mx1.example.org in inventory.py"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # any control character but the newline

BCRYPT_COST_4 = "{BLF-CRYPT}" + bcrypt.hashpw(b"correct horse battery", bcrypt.gensalt(rounds=4)).decode()
SHA512_ROUNDS_1000 = "{SHA512-CRYPT}$6$rounds=1000$saltsalt$" + "a" * 86
MIRROR_PASSWORD = "s3cr3t-mirror-pw"
ACME_PASSWORD = "acme-pw-123"


def _user(address: str, password_hash: str) -> str:
    return f"users = [{{'address': {address!r}, 'password_hash': {password_hash!r}}}]"


def _aliases(extra: dict) -> str:
    return f"aliases = {{'postmaster@example.org': ['alice@example.org'], **{extra!r}}}"


def _dns(**fields) -> str:
    return f"dns = {fields!r}"


RFC2136 = {"provider": "rfc2136", "server": "ns1.example.org", "tsig_key_name": "mailstead", "secret_file": "tsig"}


# Local parts OpenSMTPD would act on ('|' runs a command, '/' writes a file) or a shell would expand, in every
# place an address is accepted: (name, local part) x (place, how to put an address there, field)
LOCAL_PARTS = [("pipe", "|/usr/bin/id"), ("slash", "/tmp/x"), ("dollar", "$HOME"), ("brace", "{x}"),
               ("ampersand", "a&b"), ("hash", "#x")]
PLACES = [
    ("user-address", lambda p, a: p.append("production.py", _user(a, p.hash)), PROD, "users[0].address"),
    ("alias-key", lambda p, a: p.append("production.py", _aliases({a: ["alice@example.org"]})), PROD, "aliases"),
    ("alias-target", lambda p, a: p.append("production.py", _aliases({"info@example.org": [a]})), PROD, "aliases"),
    ("admin-email", lambda p, a: p.append("production.py", f"admin_email = {a!r}"), PROD, "admin_email"),
]
LOCAL_PART_CASES = [
    (f"{name}-in-{place}", lambda p, put=put, a=f"{local}@elsewhere.test": put(p, a), source, field,
     repr(f"{local}@elsewhere.test"), [])
    for name, local in LOCAL_PARTS for place, put, source, field in PLACES
]

# (id, how to break the project, file, field, the value as the message must show it (escaped), secrets)
CASES = LOCAL_PART_CASES + [
    ("user-address-leading-dash", lambda p: p.append("production.py", _user("-oX@example.org", p.hash)),
     PROD, "users[0].address", "'-oX@example.org'", []),
    ("alias-key-newline", lambda p: p.append("production.py", _aliases({"info\n@example.org": ["alice@example.org"]})),
     PROD, "aliases", "'info\\n@example.org'", []),
    ("alias-target-double-dot",
     lambda p: p.append("production.py", _aliases({"info@example.org": ["a..b@elsewhere.test"]})),
     PROD, "aliases", "'a..b@elsewhere.test'", []),
    ("admin-email-backtick", lambda p: p.append("production.py", "admin_email = 'a`id`@example.org'"),
     PROD, "admin_email", "'a`id`@example.org'", []),
    ("tls-rpt-email-subshell", lambda p: p.append("production.py", "tls_rpt_email = '$(id)@example.org'"),
     PROD, "tls_rpt_email", "'$(id)@example.org'", []),
    ("acme-email-bang", lambda p: p.append("all.py", "tls = {'mode': 'lab', 'acme_email': 'a!b@example.org'}"),
     ALL, "tls.acme_email", "'a!b@example.org'", []),
    ("dmarc-rua-pipe", lambda p: p.append("production.py", "dmarc = {'rua': 'mailto:|id@example.org'}"),
     PROD, "dmarc", "'mailto:|id@example.org'", []),
    ("dmarc-ruf-slash", lambda p: p.append("production.py", "dmarc = {'ruf': 'mailto:/var/mail/x@example.org'}"),
     PROD, "dmarc", "'mailto:/var/mail/x@example.org'", []),
    ("dmarc-rua-tag-injection",
     lambda p: p.append("production.py", "dmarc = {'rua': 'mailto:d@example.org!10m; p=none'}"),
     PROD, "dmarc", "'mailto:d@example.org!10m; p=none'", []),
    # newlines and other control characters
    ("address-newline-at-end", lambda p: p.append("production.py", _user("alice@example.org\n", p.hash)),
     PROD, "users[0].address", "'alice@example.org\\n'", []),
    ("address-newline-in-middle", lambda p: p.append("production.py", _user("evil\n@example.org", p.hash)),
     PROD, "users[0].address", "'evil\\n@example.org'", []),
    ("ntp-server-newline", lambda p: p.append("all.py", "ntp_servers = ['time.example.org\\nserver evil.test iburst']"),
     ALL, "ntp_servers[0]", "'time.example.org\\nserver evil.test iburst'", []),
    ("ntp-server-scope-id", lambda p: p.append("all.py", "ntp_servers = ['fe80::1%eth0']"),
     ALL, "ntp_servers[0]", "'fe80::1%eth0'", []),
    ("ntp-server-space", lambda p: p.append("all.py", "ntp_servers = ['time.example.org maxpoll 1']"),
     ALL, "ntp_servers[0]", "'time.example.org maxpoll 1'", []),
    ("debian-suite-newline", lambda p: p.append("all.py", "opensmtpd = {'debian_suite': 'forky\\nTrusted: yes'}"),
     ALL, "opensmtpd.debian_suite", "'forky\\nTrusted: yes'", []),
    ("version-trailing-newline", lambda p: p.append("all.py", "opensmtpd = {'version': '7.9.0p0\\n'}"),
     ALL, "opensmtpd.version", "'7.9.0p0\\n'", []),
    ("apt-mirror-newline", lambda p: p.append("all.py", "apt_mirror = 'http://mirror.example.org/debian\\nTypes: deb-src'"),
     ALL, "apt_mirror", "'http://mirror.example.org/debian\\nTypes: deb-src'", []),
    ("apt-mirror-userinfo",
     lambda p: p.append("all.py", f"apt_mirror = 'http://mirror:{MIRROR_PASSWORD}@deb.example.org/debian'"),
     ALL, "apt_mirror", "***@deb.example.org", [MIRROR_PASSWORD]),
    ("apt-mirror-file-scheme", lambda p: p.append("all.py", "apt_mirror = 'file:///srv/mirror'"),
     ALL, "apt_mirror", "'file:///srv/mirror'", []),
    ("apt-mirror-query", lambda p: p.append("all.py", "apt_mirror = 'http://deb.example.org/debian?x=1'"),
     ALL, "apt_mirror", "'http://deb.example.org/debian?x=1'", []),
    ("password-hash-trailing-newline", lambda p: p.append("production.py", _user("alice@example.org", p.hash + "\n")),
     PROD, "users[0].password_hash", "python -m mailstead hash-password", []),
    ("bcrypt-cost-04", lambda p: p.append("production.py", _user("alice@example.org", BCRYPT_COST_4)),
     PROD, "users[0].password_hash", "python -m mailstead hash-password", [BCRYPT_COST_4, BCRYPT_COST_4[-31:]]),
    ("sha512-rounds-1000", lambda p: p.append("production.py", _user("alice@example.org", SHA512_ROUNDS_1000)),
     PROD, "users[0].password_hash", "python -m mailstead hash-password", [SHA512_ROUNDS_1000, "saltsalt"]),
    ("configure-option-semicolon", lambda p: p.append("all.py", "opensmtpd = {'configure_options': ['--with-foo;id']}"),
     ALL, "opensmtpd.configure_options[0]", "'--with-foo;id'", []),
    ("configure-option-subshell",
     lambda p: p.append("all.py", "opensmtpd = {'configure_options': ['--with-foo=$(id)']}"),
     ALL, "opensmtpd.configure_options[0]", "'--with-foo=$(id)'", []),
    ("configure-option-space",
     lambda p: p.append("all.py", "opensmtpd = {'configure_options': ['--with-foo --prefix=/tmp']}"),
     ALL, "opensmtpd.configure_options[0]", "'--with-foo --prefix=/tmp'", []),
    ("configure-option-not-an-option",
     lambda p: p.append("all.py", "opensmtpd = {'configure_options': ['CFLAGS=-O0']}"),
     ALL, "opensmtpd.configure_options[0]", "'CFLAGS=-O0'", []),
    ("upstream-url-plain-http", lambda p: p.append(
        "all.py", "opensmtpd = {'source': 'upstream', 'upstream_url': 'http://example.org/opensmtpd-7.9.0p0.tar.gz', "
                  "'sha256': '" + "a" * 64 + "'}"),
     ALL, "opensmtpd.upstream_url", "'http://example.org/opensmtpd-7.9.0p0.tar.gz'", []),
    ("domain-tab", lambda p: p.append("production.py", "domains = ['exa\\tmple.org']"),
     PROD, "domains", "'exa\\tmple.org'", []),
    ("admin-email-nul", lambda p: p.append("production.py", "admin_email = 'post\\x00master@example.org'"),
     PROD, "admin_email", "'post\\x00master@example.org'", []),
    ("domain-line-separator", lambda p: p.append("production.py", "domains = ['example.org\\u2028', 'example.net']"),
     PROD, "domains", "'example.org\\u2028'", []),
    ("environment-nel", lambda p: p.append("production.py", "environment = 'production\\x85'"),
     PROD, "environment", "'production\\x85'", []),
    ("environment-newline", lambda p: p.append("production.py", "environment = 'production\\n'"),
     PROD, "environment", "'production\\n'", []),
    ("domain-label-over-63", lambda p: p.append("production.py", f"domains = ['{'a' * 64}.example.org']"),
     PROD, "domains", "a label is longer than 63 characters", []),
    ("domain-name-over-253", lambda p: p.append("production.py", f"domains = ['{'abcdefghi.' * 25}example.org']"),
     PROD, "domains", "longer than 253 characters", []),
    ("domain-non-ascii-kelvin", lambda p: p.append("production.py", "domains = ['\\u212aexample.org']"),
     PROD, "domains", "xn--", []),
    ("fqdn-trailing-newline", lambda p: p.host("mx1.example.org", fqdn="mx1.example.org\n"),
     MX1_HOST_DATA, "fqdn", "'mx1.example.org\\n'", []),
    ("ipv6-scope-id", lambda p: p.host("mx1.example.org", ipv6="2001:db8:51::10%eth0"),
     MX1_HOST_DATA, "ipv6", "'2001:db8:51::10%eth0'", []),
    ("ipv4-trailing-newline", lambda p: p.host("mx1.example.org", ipv4="198.51.100.10\n"),
     MX1_HOST_DATA, "ipv4", "'198.51.100.10\\n'", []),
    ("secrets-dir-newline", lambda p: p.append("all.py", "secrets_dir = 'secrets\\n'"),
     ALL, "secrets_dir", "'secrets\\n'", []),
    ("quota-newline", lambda p: p.append("production.py", f"users = [{{'address': 'alice@example.org', "
                                                          f"'password_hash': {p.hash!r}, 'quota': '2G\\n'}}]"),
     PROD, "users[0].quota", "'2G\\n'", []),
    ("dmarc-policy-newline", lambda p: p.append("production.py", "dmarc = {'p': 'reject\\nx'}"),
     PROD, "dmarc", "'reject\\nx'", []),
    ("caa-issuer-newline", lambda p: p.append("all.py", "tls = {'caa_issuer': 'letsencrypt.org\\n'}"),
     ALL, "tls.caa_issuer", "'letsencrypt.org\\n'", []),
    ("acme-directory-userinfo", lambda p: p.append(
        "all.py", f"tls = {{'acme_directory': 'https://acct:{ACME_PASSWORD}@acme.example.org/directory'}}"),
     ALL, "tls.acme_directory", "***@acme.example.org", [ACME_PASSWORD]),
    ("acme-profile-space", lambda p: p.append("all.py", "tls = {'acme_profile': 'tls server'}"),
     ALL, "tls.acme_profile", "'tls server'", []),
    ("acme-challenge-shell", lambda p: p.append("all.py", "tls = {'acme_challenge': 'http-01; rm -rf /'}"),
     ALL, "tls.acme_challenge", "'http-01; rm -rf /'", []),
    ("acme-trusted-by-senders-string", lambda p: p.append("all.py", "tls = {'trusted_by_senders': 'True'}"),
     ALL, "tls.trusted_by_senders", "'True'", []),
    ("acme-ca-bundle-newline", lambda p: p.append("all.py", "tls = {'acme_ca_bundle': 'ca.pem\\nx'}"),
     ALL, "tls.acme_ca_bundle", "'ca.pem\\nx'", []),
    ("resolver-forwarder-newline", lambda p: p.append("all.py", "resolver_forwarders = ['198.51.100.1@53\\n']"),
     ALL, "resolver_forwarders[0]", "'198.51.100.1@53\\n'", []),
    ("powerdns-server-id-traversal", lambda p: p.append("all.py", _dns(
        provider="powerdns", api_url="http://127.0.0.1:8081", secret_file="k", server_id="../../zones")),
     ALL, "dns.server_id", "'../../zones'", []),
    ("rfc2136-server-newline", lambda p: p.append("all.py", _dns(**{**RFC2136, "server": "ns1.example.org\n"})),
     ALL, "dns.server", "'ns1.example.org\\n'", []),
    ("tsig-key-name-space", lambda p: p.append("all.py", _dns(**{**RFC2136, "tsig_key_name": "key; drop"})),
     ALL, "dns.tsig_key_name", "'key; drop'", []),
    ("dns-zone-newline", lambda p: p.append("all.py", _dns(**{**RFC2136, "zone": "example.org\n"})),
     ALL, "dns.zone", "'example.org\\n'", []),
    ("secret-env-newline", lambda p: p.append("all.py", _dns(**{**RFC2136, "secret_file": None,
                                                                 "secret_env": "MAILSTEAD_TSIG\n"})),
     ALL, "dns.secret_env", "value not shown", ["MAILSTEAD_TSIG"]),
    ("signify-key-path-newline", lambda p: p.append(
        "all.py", "opensmtpd = {'source': 'upstream', 'upstream_url': "
                  "'https://www.opensmtpd.org/archives/opensmtpd-7.9.0p0.tar.gz', 'signify_pubkey': 'keys/x.pub\\n'}"),
     ALL, "opensmtpd.signify_pubkey", "'keys/x.pub\\n'", []),
]


@pytest.mark.parametrize("breaker, source, field, shown, secrets", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_value_is_refused_with_one_clear_line(project, breaker, source, field, shown, secrets):
    breaker(project)
    message = project.error()
    lines = message.split("\n")
    assert lines[0].endswith("(nothing was deployed, no host was contacted):"), message
    # one problem per line: no control character anywhere, so a newline in a value never breaks a line
    assert not CONTROL.search(message), repr(message)
    assert all(line.startswith("  ") and ": " in line for line in lines[1:]), message
    line = next((line for line in lines[1:] if line.startswith(f"  {source}: {field}: ")), None)
    assert line is not None, f"no line for {source}: {field}: in\n{message}"
    assert shown in line, f"{shown!r} missing from:\n{line}"
    assert "write " in line, f"no fix in:\n{line}"
    for secret in [project.hash, *secrets]:
        assert secret not in message, f"a secret is echoed in:\n{message}"


def test_there_are_many_distinct_hostile_cases():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


def test_a_weak_hash_names_the_fix_and_the_minimum(project):
    project.append("production.py", _user("alice@example.org", BCRYPT_COST_4))
    message = project.error()
    assert f"cost 04, below the minimum cost {MIN_COST}" in message
    assert "re-hash the password with `python -m mailstead hash-password` (bcrypt, cost 12)" in message


def test_an_inventory_host_name_with_a_newline_stays_on_one_line(project):
    name = "mx1.example.org\n"
    project.groups["mailservers"] = [(name, {"ipv4": "198.51.100.10"})]
    project.groups["production"] = [name, "trap1.example.org", "trap3.example.org"]
    message = project.error()
    assert not CONTROL.search(message)
    assert "fqdn: 'mx1.example.org\\n' contains a control character" in message
    assert "write fqdn = 'mx1.example.org'" in message and "(host mx1.example.org\\n)" in message


# --------------------------------------------------------------------------------------------------
# Ordinary values still pass


def test_ordinary_values_are_accepted(project):
    argon2 = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43
    sha512 = "{SHA512-CRYPT}$6$rounds=5000$saltsalt$" + "b" * 86
    project.append("production.py", f"""
        users = [
            {{"address": "alice@example.org", "password_hash": "{project.hash}", "quota": "2G"}},
            {{"address": "bob@example.net", "password_hash": "{argon2}"}},
            {{"address": "first.last+tag@example.org", "password_hash": "{sha512}", "quota": "500mb"}},
            {{"address": "under_score-x@example.net", "password_hash": "{sha512.replace('rounds=5000$', '')}"}},
        ]
        aliases = {{
            "postmaster@example.org": ["alice@example.org"],
            "info@example.net": ["bob@example.net", "Friend.Name+x@Elsewhere.TEST"],
            "@example.net": ["bob@example.net"],
        }}
        dmarc = {{"p": "quarantine", "rua": "mailto:alice@example.org!10m,mailto:reports@elsewhere.test",
                  "fo": "0:d"}}
        tls_rpt_email = "alice@example.org"
        """)
    project.append("all.py", """
        ntp_servers = ["time.cloudflare.com", "192.0.2.123", "2001:db8::123", "NTS.Netnod.SE."]
        apt_mirror = "http://[2001:db8::1]:3142/debian/"
        resolver_forwarders = ["198.51.100.1", "2001:db8::53@5353"]
        resolver_insecure_domains = ["test", "lab.example"]
        secrets_dir = "/srv/mailstead secrets/prod"
        opensmtpd = {"source": "upstream", "version": "7.10.1p2",
                     "upstream_url": "https://www.opensmtpd.org/archives/opensmtpd-7.10.1p2.tar.gz",
                     "sha256": "SHA256:""" + "A" * 64 + """",
                     "configure_options": ["--with-auth-pam=smtpd", "--with-cflags=-O2", "--without-x"]}
        tls = {"mode": "lab", "acme_profile": "tlsserver", "caa_issuer": "LetsEncrypt.org.", "trusted_by_senders": True}
        dns = {"provider": "rfc2136", "server": "2001:db8::53", "tsig_key_name": "mailstead-key.example.org.",
               "secret_env": "MAILSTEAD_TSIG"}
        """)
    hosts, envs = project.check_environments()
    settings, env = hosts["mx1.example.org"], envs["production"]
    assert env.users[2].address == "first.last+tag@example.org" and env.users[2].quota == "500M"
    assert env.aliases["info@example.net"] == ["bob@example.net", "Friend.Name+x@elsewhere.test"]
    assert "@example.net" in env.aliases
    assert settings.ntp_servers[-1] == "nts.netnod.se"
    assert settings.opensmtpd.sha256 == "a" * 64
    assert settings.opensmtpd.configure_options == ["--with-auth-pam=smtpd", "--with-cflags=-O2", "--without-x"]
    assert settings.tls.caa_issuer == "letsencrypt.org" and env.dns.server == "2001:db8::53"
    assert env.caa_issuer == "letsencrypt.org" and env.secrets_dir == "/srv/mailstead secrets/prod"
    assert env.dmarc["rua"] == "mailto:alice@example.org!10m,mailto:reports@elsewhere.test"


def test_debian_suite_and_https_mirror_are_accepted(project):
    project.append("all.py", "opensmtpd = {'debian_suite': 'sid'}\napt_mirror = 'https://mirror.example.org/debian'")
    settings = project.check()["mx1.example.org"]
    assert settings.opensmtpd.debian_suite == "sid" and settings.apt_mirror == "https://mirror.example.org/debian"


def test_hash_password_makes_hashes_the_settings_accept_and_refuses_a_weak_cost():
    h = hash_password("pw", rounds=MIN_COST)
    assert HASH_PATTERNS["BLF-CRYPT"].fullmatch(h[len("{BLF-CRYPT}"):])
    with pytest.raises(ValueError, match="below 10"):
        hash_password("pw", rounds=4)
