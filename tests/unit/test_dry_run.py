"""A dry run writes nothing on the deploy machine: DKIM keys and the DNS plan of a fresh secrets directory
(the lab test test_deploy_dry.py runs the whole `pyinfra --dry` deploy), and how a pyinfra command line is
recognised as one that will not execute."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

from mailstead import dkim
from mailstead.dns import desired_records, prepare
from dns_helpers import make_env

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tasks import common  # noqa: E402


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


class FakeProvider:
    name = "fake"

    def __init__(self):
        self.writes = 0

    def list_records(self, zone, wanted=None):
        return []

    def apply(self, zone, changes):
        self.writes += 1


def test_planned_keys_name_the_pair_ensure_keys_makes(tmp_path):
    today = dt.date(2026, 3, 1)
    planned = dkim.planned_keys(tmp_path, "example.org", today=today)
    assert [(p.selector, p.algorithm, p.public) for p in planned] == [
        ("r20260301", "rsa", dkim.PLACEHOLDER), ("e20260301", "ed25519", dkim.PLACEHOLDER)]
    assert listing(tmp_path) == []
    made = dkim.ensure_keys(tmp_path, "example.org", today=today)
    assert [k.selector for k in made] == [p.selector for p in planned]
    assert dkim.planned_keys(tmp_path, "example.org", today=today) == []  # an active pair exists


def test_dry_dns_plan_of_a_fresh_secrets_directory_writes_nothing(tmp_path):
    secrets = tmp_path / "secrets"
    env = make_env(domains=["example.org", "example.net"], dnssec=True, secrets_dir=str(secrets))
    provider = FakeProvider()
    plan, text = prepare(env, provider=provider, dry=True)
    assert listing(secrets) == []
    assert f"p={dkim.PLACEHOLDER}" in text and "note: dry run" in text
    dkim_adds = [c for c in plan.changes if "._domainkey." in c.name]
    assert len(dkim_adds) == 4 and all(dkim.PLACEHOLDER in c.new[0] for c in dkim_adds)
    with pytest.raises(ValueError, match="dry run's plan cannot be applied"):
        plan.apply()
    assert provider.writes == 0 and listing(secrets) == []

    plan, text = prepare(env, provider=FakeProvider())  # the real run: keys made, real public keys
    assert dkim.PLACEHOLDER not in text and "note: dry run" not in text
    assert {"dkim/example.org/index.json", "dkim/example.net/index.json"} <= set(listing(secrets))
    plan.apply()
    assert "dns/production/example.org.json" in listing(secrets)


def test_dry_records_keep_existing_keys(tmp_path):
    env = make_env(secrets_dir=str(tmp_path))
    real = desired_records(env)
    files = listing(tmp_path)
    assert desired_records(env, create_keys=False, placeholders=True) == real
    assert listing(tmp_path) == files


@pytest.mark.parametrize("argv, dry", [
    (["/x/.venv/bin/pyinfra", "--dry", "inventory.py", "deploy.py"], True),
    (["/x/.venv/bin/pyinfra", "-y", "--json", "inventory.py", "deploy.py"], False),
    (["/x/.venv/bin/pyinfra", "--json", "inventory.py", "deploy.py"], True),  # pyinfra stops after the plan
    (["/x/.venv/bin/pyinfra", "-y", "inventory.py", "deploy.py", "--limit", "mail.example.org"], False),
    (["/x/.venv/bin/pyinfra", "-v", "inventory.py", "deploy.py", "--dry"], True),
    (["/x/site-packages/pyinfra/__main__.py", "--dry", "inventory.py", "deploy.py"], True),
    (["/x/.venv/bin/pytest", "--dry", "tests"], False),  # not pyinfra's command line
])
def test_dry_run_reads_pyinfras_command_line(monkeypatch, argv, dry):
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delenv("PYINFRA_YES", raising=False)
    common.dry_run.cache_clear()
    try:
        assert common.dry_run() is dry
    finally:
        common.dry_run.cache_clear()
