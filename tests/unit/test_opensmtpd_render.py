"""What smtpd reads, rendered from real settings: which listener runs which filters, which TLS a client gets,
and the tables it loads. (The lab tests prove the same behaviour on a booted host.)"""

from __future__ import annotations

import re

from settings_helpers import host_and_env
from tasks import opensmtpd, tls


def settings(**extra):
    data = {"environment": "production", "domains": ["example.org", "example.net"],
            "admin_email": "alice@example.org", "ipv4": "198.51.100.10",
            "users": [{"address": "alice@example.org",
                       "password_hash": "{BLF-CRYPT}$2b$12$" + "a" * 53}],
            "aliases": {"team@example.org": ["alice@example.org"]}} | extra
    return host_and_env("mail.example.org", ["mailservers", "production"], data)


def listeners(conf: str) -> dict[str, str]:
    """port -> its `listen on` line (IPv4)."""
    return {m.group(1): line for line in conf.splitlines()
            if (m := re.match(r"listen on 0\.0\.0\.0 port (\d+) ", line))}


def chain_members(conf: str, name: str) -> list[str]:
    for line in conf.splitlines():
        if line.startswith(f'filter "{name}" chain'):
            return re.findall(r'"([^"]+)"', line)[1:]
    return [name]


def filter_of(line: str) -> str:
    m = re.search(r' filter "([^"]+)"$', line)
    return m.group(1) if m else ""


def test_submission_ports_run_authguard_and_port_25_refuses_our_own_senders():
    conf = opensmtpd.smtpd_conf(settings()[0])
    ports = listeners(conf)
    assert chain_members(conf, filter_of(ports["465"])) == ["authguard"]
    assert chain_members(conf, filter_of(ports["587"])) == ["authguard"]
    assert chain_members(conf, filter_of(ports["25"])) == ["ownsenders"]
    assert re.search(r'^filter "ownsenders" phase mail-from match mail-from <ownsenders> reject "550 5\.7\.1 ',
                     conf, re.M)
    assert opensmtpd.tables(*settings())["ownsenders"].splitlines()[1:] == ["@example.org", "@example.net"]


def test_a_later_stage_filter_joins_both_chains_after_the_builtin_ones():
    extra = opensmtpd.SmtpdFilter("rspamd", 'proc-exec "/usr/libexec/opensmtpd/filter-rspamd"')
    conf = opensmtpd.smtpd_conf(settings()[0], [extra])
    ports = listeners(conf)
    assert chain_members(conf, filter_of(ports["25"])) == ["ownsenders", "rspamd"]
    assert chain_members(conf, filter_of(ports["587"])) == ["authguard", "rspamd"]


def test_client_ports_get_aead_only_tls_and_port_25_keeps_the_defaults():
    ports = listeners(opensmtpd.smtpd_conf(settings()[0]))
    for port in ("465", "587"):
        assert f'protocols "{tls.CLIENT_PROTOCOLS_OPENSSL}"' in ports[port]
        suites = re.search(r'ciphers "([^"]+)"', ports[port]).group(1).split(":")
        assert suites and all(("GCM" in s or "CHACHA20" in s) and s.startswith("ECDHE-") for s in suites)
    assert "ciphers" not in ports["25"]


def test_package_mode_credentials_table_is_readable_by_smtpds_lookup_user_only():
    lay = opensmtpd.layout(settings(opensmtpd={"source": "package"})[0])
    assert opensmtpd.table_owner("credentials", lay) == {"user": "opensmtpd", "group": "root", "mode": "400"}
    assert opensmtpd.table_owner("virtuals", lay)["mode"] == "644"
