"""The rspamd settings (mailstead/settings/rspamd.py): hostile and wrong values are refused before any host is
touched, with one line naming the file, the field and a fix; what the rspamd stage renders from good values."""

from __future__ import annotations

import re

import pytest

from mailstead.settings.rspamd import MANAGED_LOCAL_FILES, Rspamd
from tasks import rspamd as rspamd_stage

ALL = "group_data/all.py"
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")

CASES = [
    ("whitelist-newline", "rspamd = {'greylist_whitelist': ['198.51.100.7\\nwhitelisted_ip = x']}",
     "rspamd.greylist_whitelist", "'198.51.100.7\\nwhitelisted_ip = x'"),
    ("whitelist-not-an-address", "rspamd = {'greylist_whitelist': ['mail.example.org']}",
     "rspamd.greylist_whitelist", "'mail.example.org'"),
    ("whitelist-a-string", "rspamd = {'greylist_whitelist': '198.51.100.7'}", "rspamd.greylist_whitelist",
     "'198.51.100.7'"),
    ("dnsbl-zone-ucl-injection", "rspamd = {'dnsbls': {'bl.example.org\";\\n}': 5}}", "rspamd.dnsbls", "bl.example.org"),
    ("dnsbl-score-string", "rspamd = {'dnsbls': {'bl.example.org': '5'}}", "rspamd.dnsbls", "'5'"),
    ("dnsbl-score-huge", "rspamd = {'dnsbls': {'bl.example.org': 1e9}}", "rspamd.dnsbls", "1000000000"),
    ("local-config-traversal", "rspamd = {'local_config': {'../rspamd.conf': 'x = 1;'}}", "rspamd.local_config",
     "'../rspamd.conf'"),
    ("local-config-managed-file", "rspamd = {'local_config': {'dkim_signing.conf': 'enabled = false;'}}",
     "rspamd.local_config", "dkim_signing.conf"),
    ("local-config-nul", "rspamd = {'local_config': {'phishing.conf': 'a = 1;\\x00'}}", "rspamd.local_config",
     "control character"),
    ("greylist-timeout-short", "rspamd = {'greylist_timeout': 5}", "rspamd.greylist_timeout", "5"),
    ("greylist-timeout-string", "rspamd = {'greylist_timeout': '300'}", "rspamd.greylist_timeout", "'300'"),
    ("add-header-above-reject", "rspamd = {'add_header_score': 20, 'reject_score': 15}", "rspamd", "add_header_score"),
    ("autolearn-string", "rspamd = {'autolearn': 'yes'}", "rspamd.autolearn", "'yes'"),
    ("unknown-key", "rspamd = {'greylist_timout': 300}", "rspamd.greylist_timout", "greylist_timeout"),
    ("inline-password", "rspamd = {'controller_password': 'hunter2'}", "rspamd.controller_password",
     "value not shown"),
]


@pytest.mark.parametrize("text, field, shown", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_rspamd_value_is_refused_with_one_clear_line(project, text, field, shown):
    project.append("all.py", text)
    message = project.error()
    lines = message.split("\n")
    assert not CONTROL.search(message), repr(message)
    line = next((line for line in lines[1:] if line.startswith(f"  {ALL}: {field}")), None)
    assert line is not None, f"no line for {ALL}: {field} in\n{message}"
    assert shown in line, f"{shown!r} missing from:\n{line}"
    assert "write " in line or "did you mean" in line or "remove" in line, f"no fix in:\n{line}"
    assert "hunter2" not in message


def test_good_rspamd_values_are_accepted(project):
    project.append("all.py", "rspamd = {'greylist_whitelist': ['198.51.100.0/24', '2001:db8::1'], "
                             "'dnsbls': {'bl.example.org': 7.5}, 'greylist_timeout': 60, 'autolearn': True, "
                             "'local_config': {'phishing.conf': 'openphish_enabled = true;'}}")
    settings = next(iter(project.check().values()))
    assert settings.rspamd.greylist_whitelist == ["198.51.100.0/24", "2001:db8::1/128"]
    assert settings.rspamd.dnsbls == {"bl.example.org": 7.5}


def test_rendered_local_files_carry_the_settings(project):
    project.append("all.py", "rspamd = {'dnsbls': {'bl.example.org': 7.5}, 'greylist_whitelist': ['198.51.100.7'],"
                             " 'local_config': {'phishing.conf': 'openphish_enabled = true;'}}")
    settings = next(iter(project.check().values()))

    class Env:
        secrets_dir = str(project.root / "secrets")
        domains = ["example.org"]

    files = rspamd_stage.local_files(settings, Env())
    assert set(MANAGED_LOCAL_FILES) - {"worker-controller.inc"} <= set(files)
    assert 'rbl = "bl.example.org";' in files["rbl.conf"] and "RBL_BL_EXAMPLE_ORG" in files["rbl_group.conf"]
    assert "weight = 7.5;" in files["rbl_group.conf"]
    assert 'whitelisted_ip = ["198.51.100.7/32"];' in files["greylist.conf"]
    assert "autolearn = false;" in files["classifier-bayes.conf"]
    assert 'nameserver = ["127.0.0.1:53"];' in files["options.inc"]
    assert files["phishing.conf"].endswith("openphish_enabled = true;\n")
    assert "example.org {" in files["dkim_signing.conf"] and "allow_username_mismatch = false;" in files["dkim_signing.conf"]


def test_defaults_are_sane():
    r = Rspamd()
    assert r.greylist_score < r.add_header_score < r.reject_score
    assert r.autolearn is False and r.dnsbls == {}
