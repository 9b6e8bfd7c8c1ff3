"""mailstead.secrets: the secrets directory's layout and its one writer (atomic, 0600 files, 0700 directories)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mailstead import PROJECT_DIR, secrets


def mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask():
    old = os.umask(0o022)  # what most shells have: modes must not depend on it
    yield
    os.umask(old)


def test_new_file_is_0600_in_new_0700_directories(tmp_path):
    path = tmp_path / "secrets" / "dkim" / "example.org" / "index.json"
    secrets.write_private(path, b"{}\n")
    assert path.read_bytes() == b"{}\n"
    assert mode(path) == 0o600
    for d in (path.parent, path.parent.parent, tmp_path / "secrets"):
        assert mode(d) == 0o700
    assert os.listdir(path.parent) == ["index.json"]  # no temporary file left


def test_existing_directories_keep_their_mode(tmp_path):
    d = tmp_path / "shared"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    secrets.write_private(d / "f", "text")
    assert mode(d) == 0o755 and mode(d / "f") == 0o600
    assert (d / "f").read_text() == "text"


def test_replace_is_atomic_and_tightens_the_mode(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    inode = path.stat().st_ino
    secrets.write_private(path, b"new")
    assert path.read_bytes() == b"new" and mode(path) == 0o600
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not the old one rewritten


def test_failed_write_leaves_the_old_file_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ca.key"
    path.write_bytes(b"old key")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        secrets.write_private(path, b"new key, half written")
    assert path.read_bytes() == b"old key"
    assert os.listdir(tmp_path) == ["ca.key"]


def test_failed_first_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        secrets.write_private(tmp_path / "new.key", b"x" * 100000)
    assert os.listdir(tmp_path) == []


def test_private_dir_tightens_an_existing_directory(tmp_path):
    d = tmp_path / "dkim"
    d.mkdir()
    os.chmod(d, 0o755)
    secrets.private_dir(d)
    assert mode(d) == 0o700


def test_layout(tmp_path):
    assert secrets.secrets_root("secrets") == PROJECT_DIR / "secrets"
    assert secrets.secrets_root(tmp_path) == tmp_path
    assert secrets.dkim_dir(tmp_path, "Example.ORG.") == tmp_path / "dkim" / "example.org"
    assert secrets.dns_state_file(tmp_path, "production", "example.org") == \
        tmp_path / "dns" / "production" / "example.org.json"
    ca = secrets.lab_ca_dir(tmp_path)
    assert ca == tmp_path / "lab-ca"
    assert secrets.lab_ca_dir(tmp_path, "elsewhere/ca") == PROJECT_DIR / "elsewhere" / "ca"
    assert secrets.ca_key_file(ca) == ca / "ca.key" and secrets.ca_cert_file(ca) == ca / "ca.crt"
    assert secrets.host_key_file(ca, "mail.example.org") == ca / "hosts" / "mail.example.org.key"
    assert secrets.host_cert_file(ca, "mail.example.org") == ca / "hosts" / "mail.example.org.crt"
    assert secrets.spki_hash_file(tmp_path, "mx1.example.org") == tmp_path / "tls" / "mx1.example.org.spki-sha256"
    assert secrets.credential_file(tmp_path, "pdns-api-key") == tmp_path / "pdns-api-key"
    assert secrets.credential_file(tmp_path, "/etc/token") == Path("/etc/token")
