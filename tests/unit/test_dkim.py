"""DKIM keys: created once, stored privately, reused, rotated through the documented states."""

from __future__ import annotations

import base64
import datetime as dt
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from mailstead import dkim

DAY1 = dt.date(2026, 11, 26)
DAY2 = dt.date(2027, 5, 1)


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_created_once_and_reused(tmp_path):
    first = dkim.ensure_keys(tmp_path, "Example.org", today=DAY1)
    assert sorted(k.selector for k in first) == ["e20261126", "r20261126"]
    content = {k.selector: k.path.read_bytes() for k in first}
    again = dkim.ensure_keys(tmp_path, "example.org", today=DAY2)  # a later deploy / a rebuilt host
    assert {k.selector: k.path.read_bytes() for k in again} == content
    assert [k.public() for k in again] == [k.public() for k in first]


def test_private_files_and_directories(tmp_path):
    keys = dkim.ensure_keys(tmp_path, "example.org", today=DAY1)
    d = tmp_path / "dkim" / "example.org"
    assert mode(d) == 0o700 and mode(d.parent) == 0o700
    for k in keys:
        assert mode(k.path) == 0o600
    assert mode(d / "index.json") == 0o600
    assert not list(d.glob("*.tmp"))


def test_key_formats_rspamd_loads(tmp_path):
    keys = {k.algorithm: k for k in dkim.ensure_keys(tmp_path, "example.org", today=DAY1)}
    rsa_pem = keys["rsa"].path.read_bytes()
    assert rsa_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    raw = keys["ed25519"].path.read_bytes()
    # rspamadm dkim_keygen -t ed25519 format: base64 of seed||public (64 bytes), one line, no newline
    assert b"\n" not in raw and len(raw) == 88
    sk = base64.b64decode(raw, validate=True)
    pub = ed25519.Ed25519PrivateKey.from_private_bytes(sk[:32]).public_key().public_bytes_raw()
    assert sk[32:] == pub
    assert base64.b64decode(keys["ed25519"].public()) == pub


def test_weak_rsa_refused(tmp_path):
    with pytest.raises(dkim.DkimError, match="weak DKIM key"):
        dkim.ensure_keys(tmp_path, "example.org", rsa_bits=1024)


def test_rotation_publish_activate_retire(tmp_path):
    old = {k.selector for k in dkim.ensure_keys(tmp_path, "example.org", today=DAY1)}
    new = {k.selector for k in dkim.rotate(tmp_path, "example.org", today=DAY2)}
    assert new == {"r20270501", "e20270501"}
    states = {k.selector: k.state for k in dkim.keys(tmp_path, "example.org")}
    assert all(states[s] == "active" for s in old) and all(states[s] == "published-only" for s in new)
    assert {k.selector for k in dkim.published_keys(tmp_path, "example.org")} == old | new  # DNS carries both
    assert {k.selector for k in dkim.active_keys(tmp_path, "example.org")} == old  # still signing with old

    dkim.activate(tmp_path, "example.org")
    assert {k.selector for k in dkim.active_keys(tmp_path, "example.org")} == new
    assert {k.selector for k in dkim.published_keys(tmp_path, "example.org")} == old | new

    dkim.retire(tmp_path, "example.org")
    assert {k.selector for k in dkim.published_keys(tmp_path, "example.org")} == new
    states = {k.selector: k.state for k in dkim.keys(tmp_path, "example.org")}
    assert all(states[s] == "retired" for s in old)
    with pytest.raises(dkim.DkimError):
        dkim.retire(tmp_path, "example.org")
    # a rebuild after rotation still keeps the same identity
    assert {k.selector for k in dkim.ensure_keys(tmp_path, "example.org")} == old | new


def test_two_rotations_on_one_day_get_distinct_selectors(tmp_path):
    dkim.ensure_keys(tmp_path, "example.org", today=DAY1)
    a = {k.selector for k in dkim.rotate(tmp_path, "example.org", today=DAY2)}
    b = {k.selector for k in dkim.rotate(tmp_path, "example.org", today=DAY2)}
    assert a.isdisjoint(b) and len(a | b) == 4


def test_cli(tmp_path, capsys):
    assert dkim.main(["rotate", "--domain", "example.org", "--secrets-dir", str(tmp_path)]) == 0
    assert dkim.main(["list", "--domain", "example.org", "--secrets-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("published-only") >= 2 and out.count("\tactive\t") == 2
    assert "PRIVATE" not in out
    assert dkim.main(["retire", "--domain", "example.org", "--secrets-dir", str(tmp_path)]) == 1
