"""The DNS records of a fixed environment and a fixed secrets directory (tests/unit/data/golden-secrets:
DKIM keys of two domains, a lab-CA host certificate, an explicit TLSA hash) are exactly the recorded ones
(tests/unit/data/golden-records.txt, `python -m mailstead dns records` format). Recorded before the secrets
directory's layout moved to mailstead/secrets.py and the lab CA to mailstead/pki.py: a refactoring that
changes a published record, or where a file is looked up, fails here.

These are test-only keys; they sign nothing anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

from mailstead.dns import desired_records
from dns_helpers import make_env

DATA = Path(__file__).resolve().parent / "data"


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_records_of_a_fixed_secrets_directory_are_unchanged(tmp_path):
    secrets = tmp_path / "secrets"
    shutil.copytree(DATA / "golden-secrets", secrets)
    # the fixture's private keys are stored as *.key-fixture (test-only keys, never a secret; no *.key in git)
    for fixture in secrets.rglob("*.key-fixture"):
        fixture.rename(fixture.with_suffix(".key"))
    before = _listing(secrets)
    env = make_env(domains=["example.org", "example.net"], dnssec=True, secrets_dir=str(secrets),
                   tls={"mode": "lab", "trusted_by_senders": True})  # the fixture's host certificate is from the lab CA
    lines = [line for r in desired_records(env) for line in r.lines()]
    assert lines == (DATA / "golden-records.txt").read_text().splitlines()
    assert _listing(secrets) == before  # every key existed: nothing created
