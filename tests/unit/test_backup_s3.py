"""S3-compatible backup repositories: the repository setting (https only, a valid bucket, no shell characters)
and the access key file in secrets_dir (mailstead.backup.s3_credentials): which file, strict lines, tight mode;
an error names the file, the line and the fix and never shows a key."""

from __future__ import annotations

import os
import subprocess

import pytest

from mailstead.backup import s3_credentials
from mailstead.settings.errors import SettingsError

ALL = "group_data/all.py"
FQDN = "mx1.example.org"
KEY_ID = "AKIAEXAMPLE0123456789"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

HOSTILE = [
    ("http", "s3:http://s3.example.org/mail/{fqdn}", "https only"),
    ("scheme-url", "s3://s3.example.org/mail/{fqdn}", "https only"),
    ("no-bucket", "s3:https://s3.example.org/", "BUCKET"),
    ("upper-bucket", "s3:https://s3.example.org/Mail/{fqdn}", "lowercase"),
    ("short-bucket", "s3:https://s3.example.org/m", "3-63"),
    ("shell", "s3:https://s3.example.org/mail/$(reboot)", "BUCKET"),
    ("newline", "s3:https://s3.example.org/mail\\nrm -rf /", "BUCKET"),
    ("userinfo", "s3:https://key:secret@s3.example.org/mail", "BUCKET"),
]


@pytest.mark.parametrize("value, words", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_s3_repositories_are_refused(project, value, words):
    project.append("all.py", f"backup = {{'repository': '{value}'}}")
    message = project.error()
    assert any(line.startswith(f"  {ALL}: backup.repository") for line in message.split("\n")[1:]), message
    assert words in message and "s3:https://" in message, message
    assert "secret@" not in message.replace("key:secret@", "") and "\nrm -rf" not in message


def test_s3_repositories_are_accepted(project):
    project.append("all.py", "backup = {'repository': 's3:https://s3.eu-central-1.example.org:8443/mail-backups/{fqdn}'}")
    s = next(iter(project.check().values()))
    assert s.backup.is_s3
    assert s.backup.repository_for(FQDN) == "s3:https://s3.eu-central-1.example.org:8443/mail-backups/" + FQDN


def _write(tmp_path, text: str, name: str = "s3-credentials", mode: int = 0o600):
    d = tmp_path / "backup"
    d.mkdir(exist_ok=True)
    f = d / name
    f.write_text(text)
    os.chmod(f, mode)
    return f


def test_the_access_key_file_is_read_and_normalised(tmp_path):
    _write(tmp_path, f"# from the provider's console\n AWS_SECRET_ACCESS_KEY={SECRET}\n\nAWS_ACCESS_KEY_ID={KEY_ID}\n")
    assert s3_credentials(tmp_path, FQDN) == f"AWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n".encode()
    # a host's own file wins over the shared one
    _write(tmp_path, f"AWS_ACCESS_KEY_ID=OWN\nAWS_SECRET_ACCESS_KEY=own\nAWS_DEFAULT_REGION=eu-west-1\n",
           name=f"{FQDN}.s3-credentials")
    assert s3_credentials(tmp_path, FQDN).endswith(b"AWS_DEFAULT_REGION=eu-west-1\n")
    assert s3_credentials(tmp_path, "mx2.example.org").startswith(f"AWS_ACCESS_KEY_ID={KEY_ID}".encode())


def test_the_normalised_file_is_safe_to_source(tmp_path):
    _write(tmp_path, f"AWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n")
    f = tmp_path / "env"
    f.write_bytes(s3_credentials(tmp_path, FQDN))
    out = subprocess.run(["sh", "-c", f'set -a; . "{f}"; set +a; echo "$AWS_SECRET_ACCESS_KEY"'],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == SECRET


BAD = [
    ("missing", None, 0o600, "backup.repository is an s3: repository"),
    ("world-readable", f"AWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n", 0o644, "chmod 600"),
    ("no-secret", f"AWS_ACCESS_KEY_ID={KEY_ID}\n", 0o600, "AWS_SECRET_ACCESS_KEY missing"),
    ("shell", f"AWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY=$(reboot){SECRET}\n", 0o600, "line 2"),
    ("quoted", f"AWS_ACCESS_KEY_ID=\"{KEY_ID}\"\nAWS_SECRET_ACCESS_KEY={SECRET}\n", 0o600, "no quotes"),
    ("export", f"export AWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n", 0o600, "line 1"),
    ("other-var", f"PATH=/tmp\nAWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n", 0o600, "line 1"),
    ("twice", f"AWS_ACCESS_KEY_ID={KEY_ID}\nAWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n", 0o600,
     "given twice"),
    ("space", f"AWS_ACCESS_KEY_ID={KEY_ID}\nAWS_SECRET_ACCESS_KEY={SECRET} x\n", 0o600, "no spaces"),
]


@pytest.mark.parametrize("text, mode, words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_access_key_files_are_refused_without_showing_the_key(tmp_path, text, mode, words):
    if text is not None:
        _write(tmp_path, text, mode=mode)
    with pytest.raises(SettingsError) as exc:
        s3_credentials(tmp_path, FQDN)
    message = str(exc.value)
    assert words in message and str(tmp_path / "backup" / "s3-credentials") in message, message
    assert SECRET not in message and KEY_ID not in message, message
    assert FQDN in message
