"""Session fixtures for the lab tests: boot the lab once, deploy mailstead once, test many behaviours.

Lab tests need root (network namespaces, nspawn). They fail — never skip — when they cannot run, so a
`make test` that did not prove the deploy on booted hosts cannot pass.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import DeployRun, authorize_backup_keys, run_deploy  # noqa: E402
from lablib import Lab  # noqa: E402


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab() -> Lab:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (network namespaces and systemd-nspawn): run `make test` as root")
    lab = Lab()
    lab.up()
    return lab


@pytest.fixture(scope="session")
def deployed(lab) -> DeployRun:
    """The first deploy of this session (on a fresh lab: the full build). The backup repository host (infra)
    then accepts the mail hosts' backup keys the deploy made."""
    run = run_deploy()
    assert run.returncode == 0, f"deploy failed:\n{run.stderr[-6000:]}"
    authorize_backup_keys(lab, lab.status())
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


@pytest.fixture(scope="session")
def postfix(lab, deployed):
    """Postfix 3.10 on infra, sending to the Internet of the lab (MX lookups through the lab's DNS)."""
    if lab.exec("infra", "sh", "-c", "command -v postconf", check=False).returncode != 0:
        lab.exec("infra", "sh", "-c", "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
                 "apt-get install -y -q --no-install-recommends postfix >/dev/null", timeout=300)
    lab.exec("infra", "postconf", "-e", "inet_interfaces=loopback-only", "mydestination=", "relayhost=",
             "smtp_tls_security_level=may")
    lab.exec("infra", "systemctl", "restart", "postfix")
    return "infra"
