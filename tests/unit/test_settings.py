"""Settings validation: a bad group_data value stops the run before any host is contacted, with one
message naming the file, the field, the bad value and what to write instead.

Most malformed cases run in-process through mailstead.inventory.check (what inventory.py calls);
several run the real pyinfra CLI on a temporary project whose hosts point at a local TCP listener
that counts connections: the message must be printed, the exit status non-zero, and 0 connections made.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mailstead.inventory import check, check_environments, environments, load_environment, load_inventory
from mailstead.passwords import hash_password, verify_password
from mailstead.settings import (
    ENVIRONMENT_WIDE_FIELDS,
    EnvironmentSettings,
    Settings,
    SettingsError,
    from_host,
    settings_reference_markdown,
    ssh_lockout_issues,
)

REPO = Path(__file__).resolve().parents[2]
def _drop(text: str, key: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(key + " ="))


# --------------------------------------------------------------------------------------------------
# Malformed cases: (id, how to break the project, substrings the one message must contain)

def _c(fn):
    return fn


CASES = [
    ("wrong-type-int", lambda p: p.append("all.py", 'dkim_rsa_bits = "2048"'),
     ["group_data/all.py", "dkim_rsa_bits", "'2048'", "is not a whole number", "write dkim_rsa_bits = 2048"]),
    ("wrong-type-bool", lambda p: p.append("production.py", 'dnssec = "yes"'),
     ["group_data/production.py", "dnssec", "'yes'", "True or False", "write dnssec = False"]),
    ("domains-as-string", lambda p: p.append("production.py", 'domains = "example.org"'),
     ["group_data/production.py", "domains", "is a string, not a list", "write domains = ['example.org']"]),
    ("unknown-key", lambda p: p.append("production.py", 'admin_emial = "x@example.org"'),
     ["group_data/production.py", "admin_emial", "did you mean 'admin_email'?",
      "write admin_email = 'x@example.org'"]),
    ("user-entry-not-a-dict", lambda p: p.append("production.py", 'users = ["alice@example.org"]'),
     ["group_data/production.py", "users[0]", "'alice@example.org' is not a dict", "write each entry of users as",
      "'password_hash': \"<output of python -m mailstead hash-password>\""]),
    ("alias-target-not-a-list", lambda p: p.append("production.py", 'aliases = {"postmaster@example.org": 5}'),
     ["group_data/production.py", "aliases['postmaster@example.org']", "5 is not a list",
      "write aliases = {'postmaster@example.org': ['alice@example.org']}"]),
    ("domain-singular", lambda p: p.append("production.py", 'domain = "example.org"'),
     ["group_data/production.py", "domain", "did you mean 'domains'? write domains = ['example.org']"]),
    ("unknown-nested-key", lambda p: p.append(
        "all.py", 'tls = {"mode": "acme", "acme_directry": "https://acme.example/dir"}'),
     ["group_data/all.py", "tls.acme_directry", "did you mean 'acme_directory'?"]),
    ("private-ca-with-mta-sts-enforce", lambda p: p.append("all.py", 'tls = {"mode": "lab"}'),
     ["group_data/all.py", "tls.mode", "mta_sts_mode = 'enforce' needs a publicly trusted certificate",
      "tls.mode = 'lab' gives it a certificate from a private CA", "write tls = {'mode': 'acme'}",
      "or mta_sts_mode = 'testing'"]),
    ("letsencrypt-staging-with-mta-sts-enforce", lambda p: p.append(
        "all.py", 'tls = {"acme_directory": "https://acme-staging-v02.api.letsencrypt.org/directory"}'),
     ["group_data/all.py", "tls.mode", "needs a publicly trusted certificate", "Let's Encrypt staging"]),
    ("private-acme-ca-with-mta-sts-enforce", lambda p: p.append(
        "all.py", 'tls = {"acme_directory": "https://ca.example.org/dir", "acme_ca_bundle": "ca.pem"}'),
     ["group_data/all.py", "tls.mode", "needs a publicly trusted certificate", "tls.acme_ca_bundle"]),
    ("acme-dns-01-without-provider", lambda p: p.append(
        "all.py", 'dns = {"provider": "none"}\ntls = {"acme_challenge": "dns-01"}'),
     ["group_data/all.py", "tls.acme_challenge", "'dns-01' publishes the challenge through the DNS provider",
      "or write tls = {'acme_challenge': 'http-01'}"]),
    ("acme-challenge-unknown", lambda p: p.append("all.py", 'tls = {"acme_challenge": "tls-alpn-01"}'),
     ["group_data/all.py", "tls.acme_challenge", "'tls-alpn-01'"]),
    ("trusted-by-senders-not-bool", lambda p: p.append("all.py", 'tls = {"trusted_by_senders": "yes"}'),
     ["group_data/all.py", "tls.trusted_by_senders", "'yes'"]),
    ("missing-environment", lambda p: p.files.update(
        {"production.py": _drop(p.files["production.py"], "environment")}),
     ["group_data/production.py", "environment", "is missing", "write environment = 'production'"]),
    ("missing-environment-no-group", lambda p: (
        p.files.update({"production.py": _drop(p.files["production.py"], "environment")}),
        p.groups.update(eu=p.groups["production"]),
    ), ["group_data/<environment>.py", "environment", "is missing",
        "write environment = '<name>' in group_data/<name>.py"]),
    ("missing-domains", lambda p: p.files.update(
        {"production.py": _drop(p.files["production.py"], "domains")}),
     ["group_data/production.py", "domains", "is missing", "write domains = ['example.org']"]),
    ("empty-domains", lambda p: p.append("production.py", "domains = []"),
     ["group_data/production.py", "domains", "is empty", "domains = ['example.org']"]),
    ("bad-domain-syntax", lambda p: p.append("production.py", 'domains = ["example.org", "exa mple.net"]'),
     ["group_data/production.py", "domains", "'exa mple.net' is not a domain name", "'example.org'"]),
    ("bad-hostname", lambda p: p.groups.update(
        mailservers=[("mx1", {"ipv4": "198.51.100.10"})], production=["mx1", "trap1.example.org",
                                                                      "trap3.example.org"]),
     ["fqdn", "'mx1' is not a fully qualified host name", "'mx1.example.org'"]),
    ("user-domain-not-served", lambda p: p.append("production.py", f"""
        users = [{{"address": "carol@example.com", "password_hash": "{p.hash}"}}]
        """),
     ["group_data/production.py", "users[0].address", "'carol@example.com'", "'example.com'",
      "not in domains", "add 'example.com' to domains"]),
    ("duplicate-user", lambda p: p.append("production.py", f"""
        users = users + [{{"address": "alice@example.org", "password_hash": "{p.hash}"}}]
        """),
     ["group_data/production.py", "users[2].address", "'alice@example.org' is defined twice", "keep one"]),
    ("user-and-alias", lambda p: p.append("production.py", """
        aliases = {"alice@example.org": ["bob@example.net"], "postmaster@example.org": ["alice@example.org"]}
        """),
     ["group_data/production.py", "aliases['alice@example.org']", "both a mailbox", "remove the alias or the mailbox"]),
    ("alias-loop-2", lambda p: p.append("production.py", """
        aliases = {"postmaster@example.org": ["alice@example.org"],
                   "a@example.org": ["b@example.org"], "b@example.org": ["a@example.org"]}
        """),
     ["group_data/production.py", "alias loop", "a@example.org -> b@example.org -> a@example.org",
      "deliver to a mailbox or a remote address"]),
    ("alias-loop-3", lambda p: p.append("production.py", """
        aliases = {"postmaster@example.org": ["alice@example.org"], "a@example.org": ["b@example.org"],
                   "b@example.org": ["c@example.net"], "c@example.net": ["a@example.org", "x@remote.test"]}
        """),
     ["group_data/production.py", "alias loop", "-> c@example.net ->", "deliver to a mailbox"]),
    ("alias-unknown-local", lambda p: p.append("production.py", """
        aliases = {"postmaster@example.org": ["alice@example.org"], "sales@example.org": ["nobody@example.org"]}
        """),
     ["group_data/production.py", "aliases['sales@example.org']", "'nobody@example.org'",
      "neither a mailbox nor an alias", "add a user with that address"]),
    ("plaintext-password", lambda p: p.append("production.py", """
        users = [{"address": "alice@example.org", "password": "hunter2"}]
        """),
     ["group_data/production.py", "users[0].password", "a plaintext password is not allowed",
      'write password_hash = "<output of python -m mailstead hash-password>"']),
    ("password-hash-without-scheme", lambda p: p.append("production.py", """
        users = [{"address": "alice@example.org", "password_hash": "hunter2"}]
        """),
     ["group_data/production.py", "users[0].password_hash", "plaintext password",
      "python -m mailstead hash-password"]),
    ("weak-hash-scheme", lambda p: p.append("production.py", """
        users = [{"address": "alice@example.org", "password_hash": "{MD5}1bc29b36f623ba82aaf6724fd3b16718"}]
        """),
     ["group_data/production.py", "users[0].password_hash", "unknown or weak hash scheme {MD5}",
      "{BLF-CRYPT}", "python -m mailstead hash-password"]),
    ("ipv4-given-ipv6", lambda p: p.host("mx1.example.org", ipv4="2001:db8:51::10", ipv6=None),
     ["host data of mx1.example.org in inventory.py", "ipv4", "'2001:db8:51::10' is an IPv6 address",
      "write ipv6 = '2001:db8:51::10' instead"]),
    ("ipv6-given-ipv4", lambda p: p.host("mx1.example.org", ipv6="198.51.100.10"),
     ["host data of mx1.example.org in inventory.py", "ipv6", "'198.51.100.10' is an IPv4 address",
      "write ipv4 = '198.51.100.10' instead"]),
    ("ip-in-group-data", lambda p: p.append("spamtraps.py", 'ipv6 = "2001:db8:51::g"'),
     ["group_data/spamtraps.py", "ipv6", "'2001:db8:51::g' is not an IP address",
      "write ipv6 = '2001:db8:51::10'", "host data in inventory.py"]),
    ("weak-dkim", lambda p: p.append("all.py", "dkim_rsa_bits = 1024"),
     ["group_data/all.py", "dkim_rsa_bits", "1024 is a weak DKIM key", "write dkim_rsa_bits = 2048"]),
    ("trap-without-position", lambda p: p.groups.update(spamtraps=[
        ("trap1.example.org", {"ipv4": "198.51.100.20"}),
        ("trap3.example.org", {"ipv4": "198.51.100.30", "spamtrap_position": "last"})]),
     ["host data of trap1.example.org in inventory.py", "spamtrap_position", "a spamtraps host needs a position", "write spamtrap_position = 'first'",
      "trap1.example.org"]),
    ("position-on-mailserver", lambda p: p.host("mx1.example.org", spamtrap_position="first"),
     ["host data of mx1.example.org in inventory.py", "spamtrap_position", "'first'",
      "not in the spamtraps group", "remove spamtrap_position"]),
    ("bad-position-value", lambda p: p.host("trap1.example.org", spamtrap_position="middle"),
     ["host data of trap1.example.org in inventory.py", "spamtrap_position", "'middle' is not allowed",
      "write spamtrap_position = 'first'"]),
    ("environment-not-a-group", lambda p: p.append("production.py", 'environment = "prod"'),
     ["group_data/production.py", "environment", "'prod' is not one of the host's inventory groups",
      "write environment = 'production'"]),
    ("unknown-dns-provider", lambda p: p.append("all.py", 'dns = {"provider": "route53", "secret_env": "X"}'),
     ["group_data/all.py", "dns.provider", "'route53' is not a known DNS provider", "write provider = one of",
      "'powerdns'"]),
    ("dns-provider-typo", lambda p: p.append("all.py", 'dns = {"provider": "powerdsn", "secret_env": "X"}'),
     ["group_data/all.py", "dns.provider", "did you mean 'powerdns'?"]),
    ("powerdns-without-api-url", lambda p: p.append("all.py", 'dns = {"provider": "powerdns", "secret_file": "k"}'),
     ["group_data/all.py", "dns.api_url", "provider 'powerdns' needs api_url",
      "'api_url': 'https://ns1.example.org:8081'"]),
    ("rfc2136-without-server", lambda p: p.append(
        "all.py", 'dns = {"provider": "rfc2136", "tsig_key_name": "k", "secret_file": "tsig"}'),
     ["group_data/all.py", "dns.server", "provider 'rfc2136' needs server", "'server': 'ns1.example.org'"]),
    ("provider-without-secret", lambda p: p.append("all.py", 'dns = {"provider": "hetzner"}'),
     ["group_data/all.py", "dns.secret_file", "needs a credential reference", "'secret_file': 'dns-token'",
      "'secret_env': 'MAILSTEAD_DNS_TOKEN'"]),
    ("secret-inline", lambda p: p.append(
        "all.py", 'dns = {"provider": "cloudflare", "api_token": "cf-SECRET-123"}'),
     ["group_data/all.py", "dns.api_token", "a secret written inline is not allowed", "'secret_file': 'dns-token'",
      "'secret_env': 'MAILSTEAD_DNS_TOKEN'"]),
    ("secret-in-env-field", lambda p: p.append(
        "all.py", 'dns = {"provider": "desec", "secret_env": "Zx8-secret-token/value"}'),
     ["group_data/all.py", "dns.secret_env", "is not an environment variable name",
      "write secret_env = 'MAILSTEAD_DNS_TOKEN'"]),
    ("acme-over-http", lambda p: p.append("all.py", 'tls = {"acme_directory": "http://acme.example.org/dir"}'),
     ["group_data/all.py", "tls.acme_directory", "'http://acme.example.org/dir' is not an https URL",
      "write acme_directory = 'https://acme-v02.api.letsencrypt.org/directory'"]),
    ("bad-apt-mirror", lambda p: p.append("all.py", 'apt_mirror = "mirror.example/debian"'),
     ["group_data/all.py", "apt_mirror", "'mirror.example/debian' is not an http(s) mirror URI",
      "write apt_mirror = '<mirror URI>'"]),
    ("bad-quota", lambda p: p.append("production.py", f"""
        users = [{{"address": "alice@example.org", "password_hash": "{p.hash}", "quota": "2 gigs"}}]
        """),
     ["group_data/production.py", "users[0].quota", "'2 gigs' is not a quota", "write quota = '2G'"]),
    ("bad-dmarc-policy", lambda p: p.append("production.py", 'dmarc = {"p": "block"}'),
     ["group_data/production.py", "dmarc", "p = 'block' is not a DMARC value", "'reject'",
      "none, quarantine, reject"]),
    ("dmarc-pct-removed", lambda p: p.append("production.py", 'dmarc = {"p": "quarantine", "pct": "50"}'),
     ["group_data/production.py", "dmarc", "tag 'pct' is not allowed", "DMARCbis", "t = 'y'"]),
    ("dmarc-ri-removed", lambda p: p.append("production.py", 'dmarc = {"ri": "86400"}'),
     ["group_data/production.py", "dmarc", "tag 'ri' is not allowed", "DMARCbis", "remove it"]),
    ("dmarc-rf-removed", lambda p: p.append("production.py", 'dmarc = {"rf": "afrf"}'),
     ["group_data/production.py", "dmarc", "tag 'rf' is not allowed", "DMARCbis"]),
    ("bad-mta-sts-mode", lambda p: p.append("production.py", 'mta_sts_mode = "enforcing"'),
     ["group_data/production.py", "mta_sts_mode", "'enforcing' is not allowed", "did you mean 'enforce'?",
      "write mta_sts_mode = 'enforce'"]),
    ("bad-sha256", lambda p: p.append("all.py", 'opensmtpd = {"source": "upstream", "sha256": "abc123",'
                                                ' "upstream_url": "https://example.org/x.tar.gz"}'),
     ["group_data/all.py", "opensmtpd.sha256", "'abc123' is not a sha256 digest",
      "write sha256 = '<64 hex digits from sha256sum>'"]),
    ("missing-admin-email", lambda p: p.files.update({"all.py": _drop(p.files["all.py"], "admin_email")}),
     ["admin_email", "is missing", "write admin_email = 'postmaster@example.org'"]),
    ("invalid-admin-email", lambda p: p.append("production.py", 'admin_email = "postmaster at example.org"'),
     ["group_data/production.py", "admin_email", "'postmaster at example.org' is not an email address",
      "write admin_email = 'postmaster@example.org'"]),
    ("admin-email-undeliverable", lambda p: p.append("production.py", 'admin_email = "reports@example.org"'),
     ["group_data/production.py", "admin_email", "'reports@example.org'", "neither a mailbox nor an alias",
      "add a user or an alias"]),
    ("env-key-in-host-data", lambda p: p.host("trap1.example.org", dns_ttl=600),
     ["host data of trap1.example.org in inventory.py", "dns_ttl", "is environment-wide",
      "set it once in group_data/production.py", "not per role or per host"]),
    ("env-key-in-role-file", lambda p: p.append("mailservers.py", "domains = ['example.com']"),
     ["group_data/mailservers.py", "domains", "is environment-wide", "set it once in group_data/production.py",
      "(host mx1.example.org)"]),
    ("caa-issuers-disagree", lambda p: p.append("spamtraps.py", "tls = {'mode': 'lab', 'caa_issuer': 'pki.goog'}"),
     ["group_data/spamtraps.py", "tls.caa_issuer", "hosts of environment 'production' disagree",
      "mx1.example.org gets 'letsencrypt.org'", "set tls = {..., 'caa_issuer': ...} once"]),
    ("roles-in-group-data", lambda p: p.append("production.py", 'roles = ["mailservers"]'),
     ["group_data/production.py", "roles", "come from the host's groups in inventory.py"]),
    ("host-in-two-environments", lambda p: (
        p.files.update({"staging.py": 'environment = "staging"\n'}),
        p.groups.update(staging=["mx1.example.org"]),
    ), ["inventory.py", "mx1.example.org is in the groups of two environments",
        "keep staging and production host lists disjoint"]),
    ("group-data-file-typo", lambda p: p.files.update({"prodution.py": 'dkim_rsa_bits = 4096\n'}),
     ["group_data/prodution.py", "applies to no host", "did you mean group_data/production.py?"]),
    ("group-data-syntax-error", lambda p: p.append("production.py", "domains = [\"example.org\""),
     ["group_data/production.py", "syntax error", "fix the file"]),
    ("env-without-mailserver", lambda p: p.groups.update(
        mailservers=[], production=["trap1.example.org", "trap3.example.org"]),
     ["inventory.py", "environment 'production' has no host in the mailservers group"]),
    ("ssh-root-keys-off-as-root", lambda p: p.append("all.py", "ssh_allow_root_keys = False"),
     ["group_data/all.py", "ssh_allow_root_keys", "logs in as root (ssh_user is not set)",
      "locks the next deploy out", "write ssh_allow_root_keys = True", "ssh_user = 'deploy' and _sudo = True"]),
    ("ssh-root-keys-off-ssh-user-root", lambda p: (
        p.append("mailservers.py", "ssh_allow_root_keys = False"), p.host("mx1.example.org", ssh_user="root")),
     ["group_data/mailservers.py", "ssh_allow_root_keys", "logs in as root (ssh_user = 'root')",
      "locks the next deploy out", "mx1.example.org"]),
]


@pytest.mark.parametrize("case_id, breaker, expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_settings_are_rejected_with_an_actionable_message(tmp_path, case_id, breaker, expected, make_project):
    project = make_project(tmp_path)
    breaker(project)
    message = project.error()
    for part in expected:
        assert part in message, f"{case_id}: {part!r} missing from:\n{message}"
    # every problem line names a file (or inventory.py) before the field
    lines = [line.strip() for line in message.splitlines()[1:]]
    assert lines and all(".py" in line.split(": ")[0] or "inventory" in line.split(": ")[0] for line in lines), message


def test_cases_are_many_and_distinct():
    assert len(CASES) >= 20
    assert len({c[0] for c in CASES}) == len(CASES)


def test_plaintext_and_inline_secrets_are_never_echoed(tmp_path, make_project):
    project = make_project(tmp_path)
    project.append("production.py", 'users = [{"address": "alice@example.org", "password": "hunter2"},'
                                     ' {"address": "bob@example.net", "password_hash": "s3cr3t-plain"}]')
    project.append("all.py", 'dns = {"provider": "cloudflare", "api_token": "cf-SECRET-123"}')
    message = project.error()
    for secret in ("hunter2", "s3cr3t-plain", "cf-SECRET-123"):
        assert secret not in message
    assert "users[0].password" in message and "users[1].password_hash" in message and "dns.api_token" in message


def test_all_problems_reported_at_once_and_merged_across_hosts(tmp_path, make_project):
    project = make_project(tmp_path)
    project.append("all.py", "dkim_rsa_bits = 1024")
    project.host("mx1.example.org", ipv4="2001:db8:51::10")
    message = project.error()
    assert message.splitlines()[0].startswith("2 problems")
    # one line for the group_data problem, naming every affected host
    dkim = [line for line in message.splitlines() if "dkim_rsa_bits" in line]
    assert len(dkim) == 1 and "mx1.example.org" in dkim[0] and "trap3.example.org" in dkim[0]


# --------------------------------------------------------------------------------------------------
# Good cases


def test_valid_project_builds_every_host(tmp_path, make_project):
    settings, envs = make_project(tmp_path).check_environments()
    assert sorted(settings) == ["mx1.example.org", "trap1.example.org", "trap3.example.org"]
    mx1 = settings["mx1.example.org"]
    assert mx1.is_mailserver and not mx1.is_spamtrap and mx1.roles == ("mailservers",)
    assert mx1.environment == "production" and sorted(envs) == ["production"]
    env = envs["production"]
    assert env.primary_domain == "example.org" and env.hosts == tuple(settings.values())
    assert mx1.ipv4 == IPv4Address("198.51.100.10")
    assert env.mailbox_addresses == ["alice@example.org", "bob@example.net"]
    assert env.users[0].quota_bytes == 2 * 1024**3
    # the environment's keys are its own: a host's settings do not carry them
    assert not hasattr(mx1, "users") and not hasattr(mx1, "domains")
    # defaults derived from admin_email
    assert mx1.tls.acme_email is None and env.tls_rpt_email == "postmaster@example.org"
    assert env.dmarc_record == "v=DMARC1; p=reject; np=reject; adkim=s; aspf=s; rua=mailto:postmaster@example.org"
    # postmaster@/abuse@ of every domain reach the admin unless defined
    assert env.effective_aliases["abuse@example.net"] == ["postmaster@example.org"]
    assert env.effective_aliases["postmaster@example.org"] == ["alice@example.org"]
    trap = settings["trap1.example.org"]
    assert trap.is_spamtrap and trap.spamtrap_position == "first"
    with pytest.raises(Exception):
        mx1.fqdn = "other.example.org"  # frozen


def test_later_groups_override_earlier_and_host_data_wins(tmp_path, make_project):
    project = make_project(tmp_path)
    project.append("mailservers.py", "unattended_upgrades = False\nchrony_set_clock = False")
    project.append("production.py", "unattended_upgrades = True")  # production comes later: wins
    project.host("mx1.example.org", chrony_set_clock=True)  # host data: highest
    s = project.check()["mx1.example.org"]
    assert s.unattended_upgrades is True and s.chrony_set_clock is True
    assert project.check()["trap1.example.org"].unattended_upgrades is True


def test_pyinfra_keys_helpers_and_private_names_are_ignored(tmp_path, make_project):
    project = make_project(tmp_path)
    project.append("production.py", "import os\nfrom pathlib import Path\n_private = 1\n"
                                    "def _helper():\n    return 1\n")
    project.host("mx1.example.org", ssh_user="root", ssh_port=2222, _sudo=True, winrm_port=1,
                 docker_identifier="x", local_x=1)
    assert project.check()["mx1.example.org"].fqdn == "mx1.example.org"


def test_a_setting_with_a_pyinfra_prefix_is_read(tmp_path, make_project):
    """ssh_allow_root_keys starts like pyinfra's ssh_* connector keys, but it is ours: group_data sets it."""
    project = make_project(tmp_path)
    project.append("all.py", 'ssh_allow_root_keys = False\nssh_user = "deploy"\n_sudo = True')
    settings = project.check()
    assert all(s.ssh_allow_root_keys is False for s in settings.values())
    project.append("all.py", 'ssh_allow_root_keys = "no"')
    assert "ssh_allow_root_keys" in project.error()


def test_ssh_lockout_check_reads_ssh_user_from_the_hosts_data(tmp_path, make_project):
    """The check on its own: only False with a root login (ssh_user unset, empty or 'root') is a problem."""
    s = make_project(tmp_path).check()["mx1.example.org"]
    off = s.model_copy(update={"ssh_allow_root_keys": False})
    assert ssh_lockout_issues(s, {}) == []
    for data in ({}, {"ssh_user": None}, {"ssh_user": ""}, {"ssh_user": "root"}):
        [(field, message)] = ssh_lockout_issues(off, data)
        assert field == "ssh_allow_root_keys" and "write ssh_allow_root_keys = True" in message
    assert ssh_lockout_issues(off, {"ssh_user": "deploy", "_sudo": True}) == []


def test_mx_preferences_and_environment_view(tmp_path, make_project):
    env = make_project(tmp_path).check_environments()[1]["production"]
    assert [(m.preference, m.host) for m in env.mx] == [
        (10, "trap1.example.org"), (20, "mx1.example.org"), (30, "trap3.example.org")]
    assert [h.fqdn for h in env.sending_hosts] == ["mx1.example.org"]
    assert [h.fqdn for h in env.mail_hosts] == ["mx1.example.org"]
    assert {(t.fqdn, t.position) for t in env.spamtraps} == {("trap1.example.org", "first"),
                                                             ("trap3.example.org", "last")}
    assert env.domains == ["example.org", "example.net"] and env.dns.provider == "powerdns"


def test_repository_group_data_validates(tmp_path):
    """The repo's own group_data/ with one mail host per environment and traps."""
    (tmp_path / "group_data").mkdir()
    for f in (REPO / "group_data").glob("*.py"):
        shutil.copy(f, tmp_path / "group_data" / f.name)
    groups = {
        "mailservers": [("mail.example.org", {"ipv4": "198.51.100.10", "ipv6": "2001:db8:51::10"}),
                        ("mail.staging.example.org", {"ipv4": "198.51.100.11"})],
        "spamtraps": [("mx1.example.org", {"ipv4": "198.51.100.20", "spamtrap_position": "first"}),
                      ("mx3.example.org", {"ipv4": "198.51.100.30", "spamtrap_position": "last"})],
        "staging": ["mail.staging.example.org"],
        "production": ["mail.example.org", "mx1.example.org", "mx3.example.org"],
    }
    settings, envs = check_environments(groups, base_dir=tmp_path)
    assert settings["mail.example.org"].environment == "production"
    assert settings["mail.staging.example.org"].environment == "staging"
    prod = envs["production"]
    assert envs["staging"].domains == ["staging.example.org"] and prod.domains == ["example.org"]
    assert [m.preference for m in prod.mx] == [10, 20, 30]


NO_HOSTS_MESSAGE = ("inventory.py: lists no hosts: add your servers to mailservers/spamtraps and "
                    "staging/production, see README 'Real servers: quick start'")


def test_the_repository_inventory_without_hosts_says_what_to_fill_in():
    """A fresh clone's inventory.py lists no servers: pyinfra and the deploy machine's commands stop and say what
    to fill in, instead of a run that does nothing."""
    proc = subprocess.run(_pyinfra_cmd() + ["-y", "inventory.py", "deploy.py"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Invalid mailstead settings" in output and NO_HOSTS_MESSAGE in output, output
    assert "Traceback" not in output and "Connecting to hosts" not in output, output
    for command in (["dns", "plan", "--env", "production"], ["dkim", "list", "--env", "production"]):
        proc = subprocess.run([sys.executable, "-m", "mailstead", *command], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 1 and NO_HOSTS_MESSAGE in proc.stderr, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr


def test_the_commands_take_the_inventory_file_like_pyinfra(tmp_path, make_project):
    """`python -m mailstead dns records --inventory FILE` reads FILE (and its group data) as pyinfra does."""
    project = make_project(tmp_path)
    project.write()
    (tmp_path / "servers.py").write_text(
        "from mailstead.inventory import check\n"
        + "".join(f"{k} = {v!r}\n" for k, v in project.groups.items())
        + "check(dict(globals()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "mailstead", "dns", "records", "--env", "production",
                           "--inventory", "servers.py"], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "example.net." in proc.stdout and "mx1.example.org." in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "mailstead", "dns", "records", "--env", "production"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "inventory.py: no such inventory file" in proc.stderr, proc.stderr


def test_load_environment_runs_the_inventory_like_pyinfra(tmp_path, make_project, monkeypatch):
    monkeypatch.chdir(tmp_path)  # pyinfra reads group_data/ of the directory it runs in
    project = make_project(tmp_path)
    project.write()
    (tmp_path / "inventory.py").write_text(
        "from mailstead.inventory import check\n"
        f"_groups = {project.groups!r}\n"
        "check(_groups)\n"
        "mailservers = _groups['mailservers']\nspamtraps = _groups['spamtraps']\n"
        "production = _groups['production']\n"
    )
    hosts = load_environment("production", str(tmp_path / "inventory.py"))
    assert sorted(h.fqdn for h in hosts) == ["mx1.example.org", "trap1.example.org", "trap3.example.org"]
    with pytest.raises(SettingsError, match="no host has environment 'staging'; known environments: production"):
        load_environment("staging", str(tmp_path / "inventory.py"))


def test_from_host_names_the_group_data_file(tmp_path, make_project):
    """Settings.from_host on pyinfra's own inventory objects (an inventory that does not call check)."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    project = make_project(tmp_path)
    project.append("mailservers.py", "unattended_upgrades = False\nchrony_set_clock = False\nimap_starttls = True")
    project.append("spamtraps.py", "imap_starttls = True\nntp_servers = ['ptbtime1.ptb.de']")
    project.append("production.py", "unattended_upgrades = True")
    project.host("mx1.example.org", chrony_set_clock=True)
    project.host("trap1.example.org", ntp_servers=["nts.netnod.se"])
    project.write()
    (tmp_path / "inventory.py").write_text("".join(f"{k} = {v!r}\n" for k, v in project.groups.items()))
    ctx_state.set(State())
    inventory = make_inventory(str(tmp_path / "inventory.py"), cwd=str(tmp_path))
    good = {h.name: from_host(h) for h in inventory}
    assert good["trap3.example.org"].spamtrap_position == "last"
    assert good["mx1.example.org"].roles == ("mailservers",)
    # check() merges group_data exactly as pyinfra does (same values for every host)
    checked, checked_envs = check_environments(project.groups, base_dir=tmp_path)
    for name, s in good.items():
        assert s.model_dump(exclude={"groups"}) == checked[name].model_dump(exclude={"groups"}), name
    # deploy.py's environments: every host of the inventory, as the check saw them
    from_inventory = environments(inventory)["production"]
    from_check = checked_envs["production"]
    assert from_inventory.model_dump(exclude={"hosts"}) == from_check.model_dump(exclude={"hosts"})
    assert [h.fqdn for h in from_inventory.hosts] == [h.fqdn for h in from_check.hosts]

    project.append("production.py", "dkim_rsa_bits = 1024")
    project.write()
    from pyinfra_cli.util import PYTHON_CODES

    PYTHON_CODES.clear()  # pyinfra caches compiled files by name
    inventory = make_inventory(str(tmp_path / "inventory.py"), cwd=str(tmp_path))
    with pytest.raises(SettingsError) as exc:
        environments(inventory)
    assert "group_data/production.py: dkim_rsa_bits: 1024 is a weak DKIM key" in str(exc.value)


def test_settings_reference_covers_every_field():
    text = settings_reference_markdown()
    for name in Settings.model_fields:
        if name not in ("roles", "groups"):
            assert f"`{name}`" in text, name
    for name in ENVIRONMENT_WIDE_FIELDS:
        assert f"| `{name}` |" in text, name
    assert "| `dkim_rsa_bits` | int | `2048` |" in text
    assert "`dns.api_url`" in text and "`opensmtpd.sha256`" in text and "`users[]`" in text


# --------------------------------------------------------------------------------------------------
# hash-password


def test_hash_password_round_trip_and_strength():
    h = hash_password("pässwörd 1")
    assert h.startswith("{BLF-CRYPT}$2b$12$")
    assert verify_password("pässwörd 1", h) and not verify_password("pässwörd 2", h)
    # the hash is accepted by the settings model
    User = EnvironmentSettings.model_fields["users"].annotation.__args__[0]
    assert User(address="a@example.org", password_hash=h).password_hash == h


def test_hash_password_cli_reads_stdin_and_prints_only_the_hash():
    proc = subprocess.run([sys.executable, "-m", "mailstead", "hash-password"], input="s3cret pw\n",
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    assert out.count("\n") == 0 and "s3cret" not in proc.stdout + proc.stderr
    assert verify_password("s3cret pw", out)  # the newline is not part of the password
    assert not verify_password("s3cret pw\n", out)


# --------------------------------------------------------------------------------------------------
# The real pyinfra CLI: the message, a non-zero exit, and no connection to any host


class ConnectionCounter:
    """A TCP listener on 127.0.0.1 that counts accepted connections (stands in for the hosts' SSH)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.count += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener():
    counter = ConnectionCounter()
    yield counter
    counter.close()


def _pyinfra_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("pyinfra")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pyinfra"]


def run_pyinfra(project, port: int) -> subprocess.CompletedProcess:
    project.write()
    groups = {}
    for name, hosts in project.groups.items():
        out = []
        for item in hosts:
            if isinstance(item, tuple):
                out.append((item[0], {**item[1], "ssh_hostname": "127.0.0.1", "ssh_port": port,
                                      "ssh_connect_retries": 0}))
            else:
                out.append(item)
        groups[name] = out
    (project.root / "inventory.py").write_text(
        "from mailstead.inventory import check\n"
        + "".join(f"{k} = {v!r}\n" for k, v in groups.items())
        + "check(dict(globals()))\n"
    )
    (project.root / "deploy.py").write_text(
        "from pyinfra.operations import server\nserver.shell(name='touch', commands=['true'])\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(_pyinfra_cmd() + ["-y", "inventory.py", "deploy.py"], cwd=project.root,
                          capture_output=True, text=True, env=env, timeout=120)


CLI_CASES = ["plaintext-password", "alias-loop-2", "unknown-dns-provider", "ipv4-given-ipv6",
             "env-key-in-host-data", "dmarc-pct-removed", "group-data-syntax-error", "ssh-root-keys-off-as-root"]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_pyinfra_cli_stops_before_connecting(tmp_path, listener, case_id, make_project):
    _, breaker, expected = next(c for c in CASES if c[0] == case_id)
    project = make_project(tmp_path)
    breaker(project)
    proc = run_pyinfra(project, listener.port)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    for part in expected:
        assert part in output, f"{part!r} missing from:\n{output}"
    assert "Invalid mailstead settings" in output
    assert "Traceback" not in output and "Connecting to hosts" not in output, output
    assert listener.count == 0, f"{listener.count} connection(s) were made:\n{output}"


def test_pyinfra_cli_connects_when_settings_are_valid(tmp_path, listener, make_project):
    """The control case: with valid settings pyinfra does go on to connect (so the counter can see it)."""
    proc = run_pyinfra(make_project(tmp_path), listener.port)
    output = proc.stdout + proc.stderr
    assert "Connecting to hosts" in output, output
    assert "Invalid mailstead settings" not in output
    assert listener.count >= 1, output


# --------------------------------------------------------------------------------------------------
# The lab's inventory (tests/lab/inventory.py, tests/lab/group_data/) validates as well


def _lab_topology():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_lab_topology", REPO / "tests" / "lab" / "topology.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_lab_inventory_validates_and_pyinfra_gives_the_hosts_the_checked_settings(tmp_path, monkeypatch):
    """What `labctl status --json` reports (built from the lab topology; the lab need not be up), through the
    lab's own inventory file run from the repository root as `make lab-deploy` runs it: group_data/, then
    tests/lab/group_data/ (whose values win)."""
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO / "tests" / "lab"))
    import labdata

    topo = _lab_topology()
    fake_state = {
        "state_dir": str(tmp_path),
        "ssh_config": str(tmp_path / "ssh_config"),
        "known_hosts": str(tmp_path / "known_hosts"),
        "ssh_key": str(tmp_path / "id_ed25519"),
        "hosts": [{"name": h.fqdn, "short": h.short, "roles": list(h.roles), "environment": h.environment,
                   "spamtrap_position": h.spamtrap_position, "ipv4": h.ipv4, "ipv6": h.ipv6, "running": True}
                  for h in topo.HOSTS],
        "domains": [{"domain": d.domain, "environment": d.environment,
                     "users": [{"address": a, "password": f"pw-{a}"} for a in d.addresses]} for d in topo.DOMAINS],
        "pdns": {"api_url": topo.PDNS_API_URL, "api_key_file": str(tmp_path / "secrets" / "pdns-api-key")},
        "gateway": {"ipv4": topo.GATEWAY_V4, "ipv6": topo.GATEWAY_V6},
        "acme": {"directory": topo.ACME_DIRECTORY, "ca_bundle": str(tmp_path / "world-ca" / "ca.pem")},
    }
    monkeypatch.setattr(labdata, "state", lambda lab=None: fake_state)
    inventory = load_inventory("tests/lab/inventory.py")  # runs the file (its check()) and pyinfra's loader
    envs = environments(inventory)
    prod = envs["production"]
    assert [(m.preference, m.host) for m in prod.mx] == [
        (10, "trap1.production.test"), (20, "mail.production.test"), (30, "trap2.production.test")]
    assert prod.domains == ["production.test"] and prod.dns.provider == "powerdns"
    assert prod.secrets_dir == f"{tmp_path}/secrets" and envs["staging"].domains == ["staging.test"]
    mail = from_host(inventory.get_host("mail.production.test"))
    assert mail.tls.mode == "acme" and mail.tls.acme_directory == "https://infra.lab.test:14000/dir"
    assert mail.chrony_set_clock is False
    assert from_host(inventory.get_host("mail.staging.test")).tls.mode == "lab"
    assert prod.mailbox_addresses == ["alice@production.test", "bob@production.test"]
    # the check (what tests/lab/inventory.py runs) merges the two group_data directories as pyinfra does
    checked = check(labdata.lab_inventory(), inventory_file=REPO / "tests" / "lab" / "inventory.py")
    for h in inventory:
        want = from_host(h).model_dump(exclude={"groups"})
        assert checked[h.name].model_dump(exclude={"groups"}) == want, h.name
    # and a bad lab value names its file under tests/lab/
    monkeypatch.setitem(fake_state, "gateway", {"ipv4": "not-an-address", "ipv6": topo.GATEWAY_V6})
    with pytest.raises(SettingsError, match=r"tests/lab/group_data/all.py: resolver_forwarders"):
        check(labdata.lab_inventory(), inventory_file=REPO / "tests" / "lab" / "inventory.py")


def _hash_password_on_a_tty(answers: list[str]) -> tuple[int, str]:
    """Run `python -m mailstead hash-password` on a pseudo-terminal, typing the answers at the prompts."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "mailstead", "hash-password"])
    out, pending, deadline = b"", list(answers), time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        while pending and out.count(b": ") > len(answers) - len(pending):
            os.write(fd, pending.pop(0).encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_hash_password_prompts_twice_on_a_tty():
    rc, out = _hash_password_on_a_tty(["tty secret 1", "tty secret 1"])
    assert rc == 0, out
    assert "Password: " in out and "Again: " in out and "tty secret" not in out  # no echo
    hashes = [w for w in out.split() if w.startswith("{BLF-CRYPT}")]
    assert len(hashes) == 1 and verify_password("tty secret 1", hashes[0])


def test_hash_password_refuses_differing_tty_answers():
    rc, out = _hash_password_on_a_tty(["one", "two"])
    assert rc != 0 and "differ" in out and "{BLF-CRYPT}" not in out
