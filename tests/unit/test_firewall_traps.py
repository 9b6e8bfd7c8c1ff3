"""Firewall, spamtrap and brute-force settings and what the tasks make of them (pure logic, no host).

Hostile values in group_data are refused by the settings check with the field and a fix; the nft ruleset opens
only what the stages serve, SSH first; trap-first's rules reset and count; the jails follow the ports.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mailstead import spamtrap as trapdata
from mailstead.settings import build_settings
from mailstead.settings.firewall import nft_rule_problem
from tasks import bruteforce, firewall, spamtrap, trapfeed

HASH = "{BLF-CRYPT}$2b$12$" + "a" * 53
PROD = "group_data/production.py"


def settings(roles=("mailservers", "production"), name="mail.example.org", **extra):
    data = {"environment": "production", "domains": ["example.org"], "admin_email": "alice@example.org",
            "ipv4": "198.51.100.10", "users": [{"address": "alice@example.org", "password_hash": HASH}]} | extra
    return build_settings(name, list(roles), data, {})


# ------------------------------------------------------------------------------------------- hostile settings

HOSTILE = [
    ("firewall = {'extra_input_rules': ['tcp dport 22 accept\\nflush ruleset']}", "firewall.extra_input_rules",
     "line break"),
    ("firewall = {'extra_input_rules': ['accept; flush ruleset']}", "firewall.extra_input_rules", "';' or '#'"),
    ("firewall = {'extra_input_rules': ['accept } chain evil {']}", "firewall.extra_input_rules", "brace"),
    ("firewall = {'extra_input_rules': 'tcp dport 9 accept'}", "firewall.extra_input_rules", "not a list"),
    ("firewall = {'ssh_port': 0}", "firewall.ssh_port", "not a TCP port"),
    ("firewall = {'ssh_port': '22'}", "firewall.ssh_port", "is not a whole number"),
    ("firewall = {'new_per_minute': -1}", "firewall.new_per_minute", "outside 1..100000"),
    ("firewall = {'unmetered_sources': ['198.51.100.1\\n']}", "firewall.unmetered_sources", "not an IP"),
    ("firewall = {'unmetered_sources': ['any']}", "firewall.unmetered_sources", "not an IP"),
    ("firewall = {'drop_all': True}", "firewall.drop_all", "unknown key 'drop_all'"),
    ("spamtrap = {'reply': '250 2.0.0 ok'}", "spamtrap.reply", "not a 4xx SMTP reply"),
    ("spamtrap = {'reply': '451 4.7.1 try\"; rm -rf /'}", "spamtrap.reply", "not a 4xx SMTP reply"),
    ("spamtrap = {'reply': '451 4.7.1 later\\n250 ok'}", "spamtrap.reply", "not a 4xx SMTP reply"),
    ("spamtrap = {'source_ttl': 1}", "spamtrap.source_ttl", "outside 60..31536000"),
    ("spamtrap = {'max_sources': 0}", "spamtrap.max_sources", "outside 1..1000000"),
    ("bruteforce = {'ignore': ['10.0.0.0/8 198.51.100.0/24']}", "bruteforce.ignore", "not an IP address"),
    ("bruteforce = {'ignore': '198.51.100.1'}", "bruteforce.ignore", "not a list"),
    ("bruteforce = {'bantime': 0}", "bruteforce.bantime", "outside 5..31536000"),
    ("bruteforce = {'maxretry': 0}", "bruteforce.maxretry", "outside 1..1000"),
]


@pytest.mark.parametrize("line,field,problem", HOSTILE, ids=[h[0][:40] for h in HOSTILE])
def test_hostile_values_are_refused_with_the_field_and_a_fix(project, line, field, problem):
    project.append("production.py", line)
    message = project.error()
    assert field in message and problem in message, message
    assert PROD in message
    assert "\nflush" not in message and "\n250" not in message  # the value is shown escaped, on one line


def test_ordinary_values_pass(project):
    project.append("production.py", "firewall = {'ssh_port': 2222, 'extra_input_rules': "
                   "['ip saddr { 198.51.100.0/24, 192.0.2.7 } tcp dport 9100 accept'], "
                   "'unmetered_sources': ['2001:db8::/48', '198.51.100.7']}\n"
                   "spamtrap = {'reply': '421 4.3.2 System not accepting network messages'}\n"
                   "bruteforce = {'ignore': ['198.51.100.0/24'], 'bantime': 600}")
    hosts = project.check()
    assert all(h.firewall.ssh_port == 2222 for h in hosts.values())


def test_an_nft_rule_line_shape():
    assert nft_rule_problem("tcp dport { 80, 443 } accept") is None
    assert nft_rule_problem("") and nft_rule_problem("a\rb") and nft_rule_problem("x # y")


# ------------------------------------------------------------------------------------------- the ruleset


def input_rules(nft: str) -> list[str]:
    chain = nft.split("chain input {", 1)[1].split("}\n", 1)[0]
    return [line.strip() for line in chain.splitlines() if line.strip()]


def test_the_mail_host_ruleset_opens_its_ports_ssh_first_and_meters_the_mail_ports():
    s = settings(firewall={"ssh_port": 2222, "unmetered_sources": ["198.51.100.1"]})
    nft = firewall.ruleset(s, [25, 465, 587, 993, 4190, 80, 443])
    rules = input_rules(nft)
    assert rules[0] == "type filter hook input priority filter; policy drop;"
    assert rules[1].startswith("tcp dport 2222 accept")  # SSH before anything that could refuse it
    assert "tcp dport { 25, 465, 587, 993, 4190 } ct state new jump mail_new" in rules
    assert "tcp dport { 80, 443 } accept" in rules
    assert not any("dport 22 " in r for r in rules)
    assert "ip saddr { 198.51.100.1/32 } accept" in nft.split("chain mail_new {", 1)[1]
    assert "limit rate over 120/minute burst 40 packets" in nft and "ct count over 40" in nft
    assert nft.count("reject with tcp reset") == 4 and " drop" not in nft.split("chain mail_new", 1)[1].split(
        "chain input", 1)[0]


def test_trap_first_resets_and_counts_and_trap_last_serves_25():
    first = settings(roles=("spamtraps", "production"), name="trap1.example.org", spamtrap_position="first")
    nft = firewall.ruleset(first, [], spamtrap.FIREWALL_RULES, spamtrap.firewall_sets(first))
    rules = input_rules(nft)
    assert "tcp dport 25 update @trap4 { ip saddr counter } reject with tcp reset" in rules
    assert rules[-1] == "tcp dport 25 reject with tcp reset"  # never a drop: senders move on at once
    assert "timeout 604800s" in nft and "size 10000" in nft
    assert "mail_new" not in "".join(rules)


def test_trap_last_answers_4xx_and_the_feed_key_is_restricted():
    last = settings(roles=("spamtraps", "production"), name="trap2.example.org", spamtrap_position="last")
    conf = spamtrap.smtpd_conf(last)
    assert "451 4.7.1 Service temporarily unavailable" in conf and "match from any for any reject" in conf

    class Env:  # the only field authorized_keys reads
        mail_hosts = [settings()]
    line = spamtrap.authorized_keys(Env, "ssh-ed25519 AAAA feed")
    assert line.startswith('restrict,command="cat /var/lib/mailstead/spamtrap/sources.json",from="198.51.100.10" ')


def test_jails_follow_the_ports_the_host_serves():
    assert bruteforce.jails([25]) == []
    names = {j.name: j for j in bruteforce.jails([25, 465, 587, 993, 4190])}
    assert names["mailstead-smtp-auth"].ports == (465, 587) and names["mailstead-authguard"].maxretry == 1
    assert names["mailstead-dovecot"].ports == (993, 4190)
    text = bruteforce.jail_local(settings(bruteforce={"ignore": ["198.51.100.1"], "bantime": 20}), [465, 993])
    assert "ignoreip = 127.0.0.0/8 ::1 198.51.100.1/32" in text and "bantime = 20" in text


def test_the_feed_key_is_made_once_0600_and_a_dry_run_makes_none(tmp_path):
    assert trapdata.feed_key(tmp_path, "production", create=False) is None
    pem, public = trapdata.feed_key(tmp_path, "production")
    path = trapdata.feed_key_file(tmp_path, "production")
    assert oct(path.stat().st_mode & 0o777) == "0o600" and b"OPENSSH PRIVATE KEY" in pem
    assert public.startswith("ssh-ed25519 ") and trapdata.feed_key(tmp_path, "production")[1] == public


def test_the_pull_keeps_trap_first_apart_and_drops_garbage(tmp_path):
    """spamtrap-pull with a fake ssh: trap-last's sources in the map, trap-first's in the other file, an
    address that is not one and a stale entry dropped."""
    now = int(__import__("time").time())
    docs = {"198.51.100.13": {"position": "first", "sources": {"198.51.100.10": {"hits": 1, "last": now}}},
            "198.51.100.14": {"position": "last", "sources": {
                "198.51.100.248": {"hits": 2, "last": now}, "2001:db8::7": {"hits": 1, "last": now},
                "not-an-ip\n1.2.3.4": {"hits": 9, "last": now}, "198.51.100.99": {"hits": 1, "last": now - 999}}}}
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh").write_text("#!/usr/bin/python3\nimport json, sys\nd = " + repr(json.dumps(docs)) +
                              "\nprint(json.dumps(json.loads(d)[sys.argv[-1].split('@')[1]]))\n")
    (fake / "ssh").chmod(0o755)
    traps = tmp_path / "traps"
    traps.write_text("trap1.example.org 198.51.100.13\ntrap2.example.org 198.51.100.14\n")
    out, first = tmp_path / "map", tmp_path / "first"
    proc = subprocess.run([sys.executable, str(trapfeed.FILES_DIR / "spamtrap/spamtrap-pull"), str(traps), "key",
                           "feed", str(tmp_path), str(out), str(first), "600", "100"],
                          env={"PATH": f"{fake}:/usr/bin:/bin"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "198.51.100.248\n2001:db8::7\n"
    assert first.read_text() == "198.51.100.10\n"
