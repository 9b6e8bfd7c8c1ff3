"""Shared helpers of the settings tests: a temporary mailstead project (group_data/*.py plus inventory groups)
validated through mailstead.inventory.check — the entry point inventory.py calls before pyinfra connects.

Tests get them as fixtures (``make_project``, ``project``), never by importing this file.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from mailstead.inventory import check, check_environments
from mailstead.passwords import MIN_COST, hash_password
from mailstead.settings import EnvironmentSettings, Settings, SettingsError

HASH = hash_password("correct horse battery", rounds=MIN_COST)  # the cheapest bcrypt cost the settings accept

BASE_FILES = {
    "all.py": """
        admin_email = "postmaster@example.org"
        dns = {"provider": "powerdns", "api_url": "http://127.0.0.1:8081", "secret_file": "pdns-api-key"}
        """,
    "production.py": f"""
        environment = "production"
        domains = ["example.org", "example.net"]
        users = [
            {{"address": "alice@example.org", "password_hash": "{HASH}", "quota": "2G"}},
            {{"address": "bob@example.net", "password_hash": "{HASH}"}},
        ]
        aliases = {{
            "postmaster@example.org": ["alice@example.org"],
            "info@example.net": ["bob@example.net", "friend@elsewhere.test"],
        }}
        """,
    "mailservers.py": "# role data\n",
    "spamtraps.py": "# role data\n",
}


def base_groups() -> dict:
    return {
        "mailservers": [("mx1.example.org", {"ipv4": "198.51.100.10", "ipv6": "2001:db8:51::10"})],
        "spamtraps": [
            ("trap1.example.org", {"ipv4": "198.51.100.20", "spamtrap_position": "first"}),
            ("trap3.example.org", {"ipv4": "198.51.100.30", "spamtrap_position": "last"}),
        ],
        "production": ["mx1.example.org", "trap1.example.org", "trap3.example.org"],
    }


class Project:
    """A temporary mailstead project: group_data/*.py plus inventory groups. ``hash`` is a valid password hash
    (the one the users of the base files have)."""

    hash = HASH

    def __init__(self, root: Path):
        self.root = root
        self.files = {name: textwrap.dedent(text) for name, text in BASE_FILES.items()}
        self.groups = base_groups()

    def append(self, name: str, text: str) -> None:
        self.files[name] = self.files.get(name, "") + "\n" + textwrap.dedent(text) + "\n"

    def host(self, name: str, **data) -> None:
        for hosts in self.groups.values():
            for i, item in enumerate(hosts):
                if isinstance(item, tuple) and item[0] == name:
                    hosts[i] = (name, {**item[1], **data})

    def write(self) -> None:
        gd = self.root / "group_data"
        if gd.exists():
            shutil.rmtree(gd)
        gd.mkdir(parents=True)
        for name, text in self.files.items():
            (gd / name).write_text(text)

    def check(self) -> dict[str, Settings]:
        self.write()
        return check(self.groups, base_dir=self.root)

    def check_environments(self) -> tuple[dict[str, Settings], dict[str, EnvironmentSettings]]:
        self.write()
        return check_environments(self.groups, base_dir=self.root)

    def error(self) -> str:
        with pytest.raises(SettingsError) as exc:
            self.check()
        return str(exc.value)


@pytest.fixture
def make_project():
    """Project(root): a new temporary project in the directory ``root``."""
    return Project


@pytest.fixture
def project(tmp_path) -> Project:
    """A valid temporary project in tmp_path."""
    return Project(tmp_path)
