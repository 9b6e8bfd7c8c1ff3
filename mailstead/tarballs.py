"""Verified OpenSMTPD source tarballs kept on the deploy machine, keyed by their sha256, so that a rebuild does
not depend on the archive still carrying the pinned release (Debian drops an .orig.tar.gz once a newer version
replaces it).

A tarball lands here after a host fetched it, checked it (against the signed Sources index, the pinned sha256 or
upstream's signature) and built it: ``<secrets_dir>/opensmtpd/opensmtpd-<version>.<sha256>.tar.gz``. The next
build of that version on any host uploads it and the host's build script uses it without fetching, after
checking the same sha256 (and the pinned one, when set)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mailstead import secrets


def cache_dir(secrets_dir) -> Path:
    return secrets.secrets_root(secrets_dir) / "opensmtpd"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find(secrets_dir, version: str, pinned_sha256: str | None = None) -> tuple[Path, str] | None:
    """(path, sha256) of a kept tarball of ``version`` (the pinned one when a sha256 is pinned), its content
    checked against the sha256 in its name; None when there is none."""
    d = cache_dir(secrets_dir)
    if not d.is_dir():
        return None
    for p in sorted(d.glob(f"opensmtpd-{version}.*.tar.gz")):
        sha = p.name[len(f"opensmtpd-{version}."):-len(".tar.gz")]
        if pinned_sha256 and sha != pinned_sha256:
            continue
        if sha256_of(p) == sha:
            return p, sha
    return None


def keep(secrets_dir, version: str, downloaded: str | os.PathLike) -> Path:
    """Move a tarball fetched back from a host (after its verified build) into the cache under its sha256."""
    src = Path(downloaded)
    sha = sha256_of(src)
    dest = cache_dir(secrets_dir) / f"opensmtpd-{version}.{sha}.tar.gz"
    secrets.private_dir(dest.parent)
    os.chmod(src, 0o600)
    os.replace(src, dest)
    return dest
