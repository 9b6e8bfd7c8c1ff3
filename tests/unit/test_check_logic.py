"""`python -m mailstead check`: its settings refuse hostile values with a clear line, and the pure parts of the
checks (queue listing, df line, MTA-STS policy text, SSH argv, what a trap's answer means) decide as the
README says. The checks against real daemons are in tests/lab/test_check.py."""

from __future__ import annotations

import re

import pytest

from mailstead.check import OK, PROBLEM, WARNING, Context, Target, netcheck
from mailstead.check.dnscheck import parse_policy
from mailstead.check.hostcheck import disk, queue, queue_entries, ssh_argv

ALL = "group_data/all.py"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")

HOSTILE = [
    ("zone-newline", "check = {'dnsbl_zones': ['zen.spamhaus.org\\nexample.org']}", "check.dnsbl_zones[0]"),
    ("zone-url", "check = {'dnsbl_zones': ['https://zen.spamhaus.org/']}", "check.dnsbl_zones[0]"),
    ("zone-shell", "check = {'dnsbl_zones': ['$(id).example.org']}", "check.dnsbl_zones[0]"),
    ("zone-twice", "check = {'dnsbl_zones': ['bl.example.org', 'bl.example.org']}", "check.dnsbl_zones"),
    ("days-string", "check = {'cert_warn_days': '14'}", "check.cert_warn_days"),
    ("days-zero", "check = {'cert_warn_days': 0}", "check.cert_warn_days"),
    ("queue-negative", "check = {'queue_warn_messages': -1}", "check.queue_warn_messages"),
    ("hours-huge", "check = {'queue_warn_hours': 100000}", "check.queue_warn_hours"),
    ("disk-100", "check = {'disk_warn_percent': 100}", "check.disk_warn_percent"),
    ("unknown-key", "check = {'dnsbl': ['zen.spamhaus.org']}", "check"),
]


@pytest.mark.parametrize("text, field", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_check_settings_are_refused_with_one_line(project, text, field):
    project.append("all.py", text)
    message = project.error()
    assert not CONTROL.search(message), repr(message)
    line = next((line for line in message.split("\n")[1:] if line.startswith(f"  {ALL}: {field}")), None)
    assert line is not None, message


def test_check_settings_accept_ordinary_values(project):
    project.append("all.py", "check = {'dnsbl_zones': [], 'cert_warn_days': 30, 'disk_warn_percent': 90}")
    settings = next(iter(project.check().values()))
    assert settings.check.dnsbl_zones == [] and settings.check.cert_warn_days == 30


QUEUE = """\
1a2b3c4d5e6f7a8b|inet4|mta||someone@production.test|bob@far.example|bob@far.example|1700000000|1700345600|1700003600|2|pending|1|Network error
9a2b3c4d5e6f7a8b|inet4|mta||someone@production.test|eve@far.example|eve@far.example|1700007200|1700352800|0|0|pending|0|
"""


class _S:
    def __init__(self, **kw):
        from mailstead.settings.check import Check

        self.check = Check(**kw)
        self.fqdn = "mx1.example.org"
        self.is_mailserver = True


def test_queue_lines_give_ids_and_creation_times():
    assert queue_entries(QUEUE) == [("1a2b3c4d5e6f7a8b", 1700000000), ("9a2b3c4d5e6f7a8b", 1700007200)]
    assert queue_entries("") == []


def test_queue_is_ok_when_small_and_warns_when_old_or_large():
    t = Target(settings=_S())
    [f] = queue(t, QUEUE, now=1700000000 + 3600)
    assert f.status == OK and "2 message(s) queued, oldest 1.0 h" in f.detail
    [f] = queue(t, QUEUE, now=1700000000 + 25 * 3600)
    assert f.status == WARNING
    [f] = queue(Target(settings=_S(queue_warn_messages=1)), QUEUE, now=1700000000)
    assert f.status == WARNING
    [f] = queue(t, "smtpctl: smtpd doesn't seem to be running\n", now=0)
    assert f.status == PROBLEM and "not running" in f.detail


def test_disk_use_levels():
    t = Target(settings=_S())
    line = "/dev/sda1 1000000 {used} {avail} {pct}% /"
    assert [f.status for f in disk(t, line.format(used=500000, avail=500000, pct=50))] == [OK]
    assert [f.status for f in disk(t, line.format(used=900000, avail=100000, pct=90))] == [WARNING]
    assert [f.status for f in disk(t, line.format(used=990000, avail=10000, pct=99))] == [PROBLEM]
    assert [f.status for f in disk(t, "no-store")] == [PROBLEM]


def test_policy_text_is_parsed_by_key():
    policy = "version: STSv1\nmode: enforce\nmx: mail.example.org\nmx: mx2.example.org\nmax_age: 604800\n"
    assert parse_policy(policy)["mx"] == ["mail.example.org", "mx2.example.org"]
    assert parse_policy(policy)["mode"] == ["enforce"]


def test_ssh_argv_follows_the_inventory_data():
    argv = ssh_argv({"ssh_hostname": "198.51.100.12", "ssh_user": "root", "ssh_key": "/k", "ssh_port": 2222,
                     "ssh_config_file": "/c", "ssh_known_hosts_file": "/kh",
                     "ssh_strict_host_key_checking": "yes"}, "mail.example.org")
    assert argv[-1] == "root@198.51.100.12"
    assert ["-F", "/c"] == argv[argv.index("-F"):argv.index("-F") + 2]
    assert "UserKnownHostsFile=/kh" in argv and "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert ssh_argv({}, "mail.example.org")[-1] == "mail.example.org"


class _Trap:
    def __init__(self, position):
        self.fqdn, self.spamtrap_position, self.ipv4, self.ipv6 = "trap.example.org", position, "198.51.100.9", None


class _Env:
    primary_domain = "example.org"


@pytest.mark.parametrize("position, answer, status", [
    ("first", ("connect", 0, "connection refused"), OK),
    ("first", ("rcpt", 550, "no"), OK),
    ("first", ("rcpt", 250, "ok"), PROBLEM),
    ("last", ("rcpt", 451, "try later"), OK),
    ("last", ("banner", 421, "busy"), OK),
    ("last", ("connect", 0, "connection refused"), WARNING),
    ("last", ("rcpt", 250, "ok"), PROBLEM),
    ("first", ("rcpt", 451, "later"), WARNING),
])
def test_what_a_trap_answer_means(monkeypatch, position, answer, status):
    monkeypatch.setattr(netcheck, "_smtp_probe", lambda ctx, t, rcpt: answer)
    ctx = Context.__new__(Context)
    ctx.env = _Env()
    [f] = netcheck.trap(ctx, Target(settings=_Trap(position)))
    assert f.status == status, f
    assert f.status == OK or f.fix


class _Smtpd:
    def __init__(self, version):
        from mailstead.settings.models import OpenSmtpd

        self.opensmtpd = OpenSmtpd(version=version)
        self.fqdn = "mx1.example.org"


def test_a_newer_opensmtpd_in_the_suite_is_a_warning():
    from mailstead.check.releases import newer_release, upstream_part

    assert upstream_part("1:7.10.1p0-2") == "7.10.1p0"
    [f] = newer_release(Target(settings=_Smtpd("7.9.0p0")), ["7.9.0p0-1"])
    assert f.status == OK
    [f] = newer_release(Target(settings=_Smtpd("7.9.0p0")), ["7.9.0p0-1", "7.10.1p0-1"])
    assert f.status == WARNING and "7.10.1p0" in f.detail and "opensmtpd = {'version': '7.10.1p0'}" in f.fix
    [f] = newer_release(Target(settings=_Smtpd("7.9.0p0")), [])
    assert f.status == WARNING


def test_release_order_is_debians_not_the_string_order():
    """7.10 is newer than 7.9, and a 'p1' portable release newer than 'p0' (dpkg's order, python-debian)."""
    from mailstead.check.releases import newer_release

    [f] = newer_release(Target(settings=_Smtpd("7.9.0p0")), ["7.9.0p1-1"])
    assert f.status == WARNING and "7.9.0p1" in f.detail
    [f] = newer_release(Target(settings=_Smtpd("7.10.0p0")), ["7.9.0p0-1", "7.9.9p9-1"])
    assert f.status == OK
