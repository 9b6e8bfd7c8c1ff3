"""Verified OpenSMTPD tarballs kept on the deploy machine: filed under their sha256, found only when the content
still matches (and the pinned sha256, when set), and uploaded in pieces that reassemble to the same bytes."""

from __future__ import annotations

import hashlib
import os
import subprocess

from mailstead import tarballs
from tasks.opensmtpd import upload_commands


def test_keep_find_and_a_changed_file_is_not_used(tmp_path):
    data = os.urandom(50000)
    sha = hashlib.sha256(data).hexdigest()
    incoming = tmp_path / "in.tar.gz"
    incoming.write_bytes(data)
    kept = tarballs.keep(tmp_path / "secrets", "7.9.0p0", incoming)
    assert kept.name == f"opensmtpd-7.9.0p0.{sha}.tar.gz" and oct(kept.stat().st_mode)[-3:] == "600"
    assert tarballs.find(tmp_path / "secrets", "7.9.0p0") == (kept, sha)
    assert tarballs.find(tmp_path / "secrets", "7.9.0p0", pinned_sha256=sha) == (kept, sha)
    assert tarballs.find(tmp_path / "secrets", "7.9.0p0", pinned_sha256="0" * 64) is None
    assert tarballs.find(tmp_path / "secrets", "7.8.0p0") is None
    kept.write_bytes(data + b"x")  # tampered with: its name no longer matches its content
    assert tarballs.find(tmp_path / "secrets", "7.9.0p0") is None


def test_upload_commands_reassemble_the_file_or_keep_nothing(tmp_path):
    data = os.urandom(40000)
    src = tmp_path / "t.tar.gz"
    src.write_bytes(data)
    dest = tmp_path / "dest.tar.gz"
    cmds = upload_commands(src, hashlib.sha256(data).hexdigest(), str(dest), chunk=4096)
    assert len(cmds) > 10
    for c in cmds:
        subprocess.run(["sh", "-c", c], check=True)
    assert dest.read_bytes() == data
    dest.unlink()
    bad = upload_commands(src, "0" * 64, str(dest), chunk=4096)
    for c in bad[:-1]:
        subprocess.run(["sh", "-c", c], check=True)
    assert subprocess.run(["sh", "-c", bad[-1]]).returncode != 0 and not dest.exists()
