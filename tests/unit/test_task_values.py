"""The pure logic inside the tasks, checked on the values a daemon reads: smtpd's tables, Dovecot's users
file, the names on a host's certificate. (The lab tests prove the same on booted hosts: mail to an alias
arrives, a user cannot send as another, ...)"""

from __future__ import annotations

from mailstead import pki
from settings_helpers import host_and_env
from tasks import dovecot, mailusers, opensmtpd

HASH = "{BLF-CRYPT}$2b$12$" + "a" * 53


def settings(**extra):
    data = {"environment": "production", "domains": ["example.org", "example.net"],
            "admin_email": "alice@example.org", "ipv4": "198.51.100.10",
            "users": [{"address": "alice@example.org", "password_hash": HASH, "quota": "2G"},
                      {"address": "bob@example.net", "password_hash": HASH}],
            "aliases": {"team@example.org": ["alice@example.org", "bob@example.net"],
                        "@example.net": ["bob@example.net"],
                        "ext@example.org": ["someone@elsewhere.test"]}} | extra
    return host_and_env("mail.example.org", ["mailservers", "production"], data)


def table(name: str, s=None) -> dict[str, str]:
    """A mapping table as smtpd reads it: key -> value (comments skipped)."""
    out = {}
    for line in opensmtpd.tables(*(s or settings()))[name].splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value
    return out


def test_virtuals_deliver_mailboxes_locally_and_expand_aliases_with_the_catch_all_last():
    lines = [x for x in opensmtpd.tables(*settings())["virtuals"].splitlines() if not x.startswith("#")]
    virt = table("virtuals")
    assert virt["alice@example.org"] == mailusers.VMAIL_USER
    assert virt["team@example.org"] == "alice@example.org, bob@example.net"
    assert virt["ext@example.org"] == "someone@elsewhere.test"
    # RFC 5321/2142: postmaster@ and abuse@ of every domain reach the admin unless defined
    assert virt["postmaster@example.net"] == "alice@example.org"
    assert virt["abuse@example.org"] == "alice@example.org"
    assert lines[-1].startswith("@example.net ")  # a catch-all never shadows a real address


def test_recipients_are_exactly_the_addresses_we_accept():
    rcpts = set(table("recipients"))
    assert {"alice@example.org", "bob@example.net", "team@example.org", "@example.net",
            "postmaster@example.org", "abuse@example.net"} <= rcpts
    assert "someone@elsewhere.test" not in rcpts


def test_a_login_may_send_as_itself_and_the_aliases_that_reach_it_only():
    senders = table("sendermap")
    assert set(senders["alice@example.org"].split(", ")) == {"alice@example.org", "team@example.org",
                                                               "postmaster@example.org", "abuse@example.org",
                                                               "postmaster@example.net", "abuse@example.net"}
    assert set(senders["bob@example.net"].split(", ")) == {"bob@example.net", "team@example.org"}


def test_dovecot_users_file_has_one_passwd_line_per_user_with_its_quota():
    lines = dovecot.users_file(settings()[1]).splitlines()
    assert lines == [f"alice@example.org:{HASH}::::::userdb_quota_storage_size=2G", f"bob@example.net:{HASH}::::::"]


def test_certificate_names_cover_the_host_and_the_web_names_of_every_domain():
    assert pki.host_names(*settings()) == ["mail.example.org", "mta-sts.example.org", "autoconfig.example.org",
                                          "mta-sts.example.net", "autoconfig.example.net"]
