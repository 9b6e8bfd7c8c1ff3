"""The day-2 commands' edits of a group_data file: the person's text is kept, the block is replaced in place,
the file stays valid Python, and loading it gives the users and aliases the commands meant."""

from __future__ import annotations

import json

from mailstead import groupdata
from mailstead.inventory import load_group_data
from mailstead.passwords import MIN_COST, hash_password

HASH = hash_password("correct horse battery", rounds=MIN_COST)

FILE = '''# The staging environment.
environment = "staging"
users = [{"address": "alice@example.org", "password_hash": "H1"}]
aliases = {"postmaster@example.org": ["alice@example.org"]}
'''


def test_add_replace_remove_users_and_aliases(tmp_path):
    path = tmp_path / "staging.py"
    path.write_text(FILE)
    groupdata.edit(path, users={"carol@example.org": {"address": "carol@example.org", "password_hash": "H3"}})
    groupdata.edit(path, aliases={"help@example.org": ["carol@example.org"]})
    data = load_group_data(path)
    assert [u["address"] for u in data["users"]] == ["alice@example.org", "carol@example.org"]
    assert data["aliases"] == {"postmaster@example.org": ["alice@example.org"], "help@example.org": ["carol@example.org"]}
    assert "_mailstead_users" not in data  # not a setting

    groupdata.edit(path, users={"carol@example.org": {"address": "carol@example.org", "password_hash": "H4"},
                                "alice@example.org": None},
                   aliases={"postmaster@example.org": None})
    text = path.read_text()
    assert text.startswith(FILE) and text.count(groupdata.BEGIN) == 1
    data = load_group_data(path)
    assert data["users"] == [{"address": "carol@example.org", "password_hash": "H4"}]
    assert data["aliases"] == {"help@example.org": ["carol@example.org"]}


def test_text_after_the_block_is_kept(tmp_path):
    path = tmp_path / "production.py"
    path.write_text(groupdata.with_block(FILE, {}, {}) + "dns_ttl = 300\n")
    groupdata.edit(path, aliases={"a@example.org": ["b@example.org"]})
    data = load_group_data(path)
    assert data["dns_ttl"] == 300 and data["aliases"]["a@example.org"] == ["b@example.org"]


def test_a_file_without_users_gets_only_the_block_users(tmp_path):
    path = tmp_path / "new.py"
    groupdata.edit(path, users={"x@example.org": {"address": "x@example.org", "password_hash": "H"}})
    assert load_group_data(path)["users"] == [{"address": "x@example.org", "password_hash": "H"}]


# ----------------------------------------------------------------------------- hashes outside git


def _hash_file_project(project, tmp_path, hashes):
    secrets = tmp_path / "sec"
    secrets.mkdir(exist_ok=True)
    if hashes is not None:
        (secrets / "hashes.json").write_text(json.dumps(hashes))
    project.append("all.py", f"secrets_dir = {str(secrets)!r}\npassword_hashes_file = 'hashes.json'")
    project.append("production.py", "users = [{'address': 'alice@example.org', 'quota': '2G'}, "
                                    "{'address': 'bob@example.net', 'password_hash': BOB}]".replace("BOB", repr(HASH)))


def test_users_without_a_hash_take_it_from_the_hashes_file(project, tmp_path):
    _hash_file_project(project, tmp_path, {"alice@example.org": HASH})
    _, envs = project.check_environments()
    users = {u.address: u.password_hash for u in envs["production"].users}
    assert users == {"alice@example.org": HASH, "bob@example.net": HASH}


def test_a_user_missing_from_the_hashes_file_or_a_bad_file_is_named(project, tmp_path):
    _hash_file_project(project, tmp_path, None)
    message = project.error()
    assert "users[0].password_hash" in message
    (tmp_path / "sec" / "hashes.json").write_text("not json")
    message = project.error()
    assert "hashes.json" in message and "not a JSON object" in message
    _hash_file_project(project, tmp_path, {"carol@example.org": HASH})
    message = project.error()
    assert "users[0].password_hash" in message and HASH not in message
