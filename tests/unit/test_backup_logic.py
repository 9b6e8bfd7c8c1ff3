"""Backups: the settings refuse hostile repository and schedule values, the deploy machine makes each host's
restic password and SSH key once (0600) and reuses them, and the restore script restores exactly one mailbox
or the whole store."""

from __future__ import annotations

import subprocess
import stat

import pytest

from mailstead.backup import backup_secrets, restore_script

ALL = "group_data/all.py"

HOSTILE = [
    ("repo-newline", "backup = {'repository': '/srv/backup\\nrm -rf /'}", "backup.repository"),
    ("repo-shell", "backup = {'repository': 'sftp:u@h:/srv/$(id)'}", "backup.repository"),
    ("repo-relative", "backup = {'repository': 'srv/backup'}", "backup.repository"),
    ("repo-s3-http", "backup = {'repository': 's3:http://minio.example.org/b'}", "backup.repository"),
    ("repo-space", "backup = {'repository': '/srv/my backup'}", "backup.repository"),
    ("schedule-newline", "backup = {'schedule': 'daily\\nExecStart=/bin/sh'}", "backup.schedule"),
    ("schedule-semicolon", "backup = {'schedule': 'daily; reboot'}", "backup.schedule"),
    ("keep-zero", "backup = {'keep_daily': 0}", "backup.keep_daily"),
    ("keep-string", "backup = {'keep_weekly': '5'}", "backup.keep_weekly"),
]


@pytest.mark.parametrize("text, field", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_backup_settings_are_refused(project, text, field):
    project.append("all.py", text)
    message = project.error()
    assert any(line.startswith(f"  {ALL}: {field}") for line in message.split("\n")[1:]), message
    assert "\nrm -rf" not in message and "\nExecStart" not in message


def test_ordinary_backup_settings(project):
    project.append("all.py", "backup = {'repository': 'sftp:restic@backup.example.org:/srv/restic/{fqdn}', "
                             "'schedule': '*-*-* 03:00'}")
    s = next(iter(project.check().values()))
    assert s.backup.repository_for("mx1.example.org") == "sftp:restic@backup.example.org:/srv/restic/mx1.example.org"


def test_secrets_are_made_once_private_and_reused(tmp_path):
    assert backup_secrets(tmp_path, "mx1.example.org", create=False) is None
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing
    pw, key, pub = backup_secrets(tmp_path, "mx1.example.org")
    assert key.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----") and pub.startswith(b"ssh-ed25519 ")
    for f in (tmp_path / "backup").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert backup_secrets(tmp_path, "mx1.example.org") == (pw, key, pub)


def test_restore_script_one_mailbox_or_the_whole_store():
    one = restore_script("mx1.example.org", "alice@example.org")
    assert "--include '/var/vmail/example.org/alice'" in one and "doveadm index -u 'alice@example.org'" in one
    assert "systemctl stop opensmtpd" not in one
    whole = restore_script("mx1.example.org", None)
    assert "--include '/var/vmail'" in whole and "doveadm index -A" in whole and "systemctl stop opensmtpd" in whole
    # a whole host gets rspamd's Bayes data back (Valkey stopped meanwhile); one mailbox leaves it alone
    assert "--include '/var/lib/valkey/dump.rdb'" in whole and "systemctl stop valkey-server" in whole
    assert "valkey" not in one
    for script in (one, whole):
        assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0, script


