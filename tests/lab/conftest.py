"""Session fixtures for the lab tests: boot the lab once, deploy mailstead once, test many behaviours.

Lab tests need root (network namespaces, nspawn). They fail — never skip — when they cannot run, so a
`make test` that did not prove the deploy on booted hosts cannot pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lablib import Lab  # noqa: E402

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
LABCTL = str(ROOT / "tests" / "lab" / "labctl")
LAB_INVENTORY = "tests/lab/inventory.py"  # the lab's inventory, relative to ROOT (where pyinfra runs)


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.lab)


@dataclass
class DeployRun:
    returncode: int
    seconds: float
    stdout: str
    stderr: str

    @property
    def results(self) -> dict:
        """pyinfra's --json results: operations with the hosts they changed, left alone or failed on."""
        return json.loads(self.stdout)["results"]

    def changed(self) -> dict[str, list[str]]:
        """{operation name: [hosts it changed]} for every operation that changed something."""
        return {op["name"]: op["success"] for op in self.results["operations"] if op["success"]}


def run_deploy(*args: str, env: dict | None = None, timeout: int = 1800) -> DeployRun:
    """`pyinfra -y --json tests/lab/inventory.py deploy.py` against the lab, as `make lab` runs it: from the lab's
    outside world (`labctl net`), where the deploy machine reaches the hosts and the DNS provider's API."""
    full_env = dict(os.environ, **(env or {}))
    start = time.monotonic()
    proc = subprocess.run(
        [LABCTL, "net", "--", PYINFRA, "-y", "--json", *args, LAB_INVENTORY, "deploy.py"],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    return DeployRun(proc.returncode, time.monotonic() - start, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def lab() -> Lab:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (network namespaces and systemd-nspawn): run `make test` as root")
    lab = Lab()
    lab.up()
    return lab


@pytest.fixture(scope="session")
def deployed(lab) -> DeployRun:
    """The first deploy of this session (on a fresh lab: the full build)."""
    run = run_deploy()
    assert run.returncode == 0, f"deploy failed:\n{run.stderr[-6000:]}"
    return run


@pytest.fixture(scope="session")
def redeployed(deployed) -> DeployRun:
    """A second deploy right after the first: it must change nothing."""
    return run_deploy()


@pytest.fixture(scope="session")
def status(lab) -> dict:
    return lab.status()


@pytest.fixture(scope="session")
def mail_hosts(status) -> list[dict]:
    return [h for h in status["hosts"] if "mailservers" in h["roles"]]


@pytest.fixture(scope="session")
def mailstead_hosts(status) -> list[dict]:
    return [h for h in status["hosts"] if {"mailservers", "spamtraps"} & set(h["roles"])]
