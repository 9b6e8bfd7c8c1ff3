"""`python -m mailstead domain add`: the group_data block gains the domain (the person's text kept, the file
valid Python, `domains` loaded as meant, also when the domains come from all.py); hostile or malformed names and
domains that exist already are refused before anything is written; the deploy gets only the domain's stages."""

from __future__ import annotations

import pytest

from mailstead import domain as domain_cmd
from mailstead import groupdata
from mailstead.inventory import check_environments, load_group_data

FILE = '''# The staging environment.
environment = "staging"
domains = ["example.org"]
users = [{"address": "alice@example.org", "password_hash": "H1"}]
'''


def test_domains_are_appended_once_and_users_aliases_are_kept(tmp_path):
    path = tmp_path / "staging.py"
    path.write_text(FILE)
    groupdata.edit(path, users={"carol@example.org": {"address": "carol@example.org", "password_hash": "H3"}})
    block_before = path.read_text().split(groupdata.BEGIN)[1]
    assert "_mailstead_domains" not in block_before  # a users-only block is unchanged by this feature
    groupdata.edit(path, domains=["example.net"])
    groupdata.edit(path, domains=["example.net", "example.com"])
    text = path.read_text()
    assert text.startswith(FILE) and text.count(groupdata.BEGIN) == 1
    data = load_group_data(path)
    assert data["domains"] == ["example.org", "example.net", "example.com"]
    assert [u["address"] for u in data["users"]] == ["alice@example.org", "carol@example.org"]
    assert "_mailstead_domains" not in data
    assert groupdata.read_domains(text) == ["example.net", "example.com"]
    # a later users edit keeps the domains
    groupdata.edit(path, users={"alice@example.org": None})
    assert load_group_data(path)["domains"] == ["example.org", "example.net", "example.com"]


def test_sets_outside_block(tmp_path):
    assert groupdata.sets_outside_block(FILE, "domains")
    assert not groupdata.sets_outside_block('environment = "x"\n', "domains")
    text = groupdata.with_block('environment = "x"\n', {}, {}, ["a.example"])
    assert not groupdata.sets_outside_block(text, "domains")  # the block's own line does not count
    assert groupdata.sets_outside_block(text + "domains: list = ['b.example']\n", "domains")


@pytest.mark.parametrize("bad", [
    "bad domain", "a\nb.example.org", "x.org\n_mailstead_users = {}", "ex_ample.org", "-x.org", "org", "../etc",
    "x.org;rm -rf /", "é.example", "x" * 260 + ".org", "'; import os; '", "", "example.org\x00",
])
def test_hostile_names_are_refused_naming_file_field_and_fix(bad):
    with pytest.raises(SystemExit) as exc:
        domain_cmd.check_domain(bad, "group_data/staging.py")
    message = str(exc.value)
    assert message.startswith("group_data/staging.py: domains: ") and "example.org" in message
    assert "nothing was changed" in message


def test_names_are_normalised():
    assert domain_cmd.check_domain(" New.Example.ORG. ", "f") == "new.example.org"


class _Run:
    def __init__(self, project, monkeypatch):
        project.write()
        self.path = project.root / "group_data" / "production.py"
        self.project = project
        self.deploys: list[tuple[str, bool]] = []
        monkeypatch.setattr(domain_cmd, "_environments",
                            lambda inv: check_environments(project.groups, base_dir=project.root)[1])
        monkeypatch.setattr(groupdata, "environment_file", lambda env, inv: self.path)
        monkeypatch.setattr(domain_cmd, "dns_step", lambda env, d, *a: (True, False))
        monkeypatch.setattr(domain_cmd, "zone_problem", lambda env, d, *a: self.zone_missing)
        self.zone_missing = None
        monkeypatch.setattr(domain_cmd, "deploy_users",
                            lambda inv, env, stages, dry: self.deploys.append((stages, dry)) or 0)

    def __call__(self, *argv: str) -> int:
        return domain_cmd.domain_main(list(argv))


def test_add_edits_validates_and_deploys_only_the_domain_stages(project, monkeypatch, capsys):
    run = _Run(project, monkeypatch)
    before = run.path.read_text()
    assert run("add", "New.Example.COM", "--env", "production") == 0
    assert load_group_data(run.path)["domains"] == ["example.org", "example.net", "new.example.com"]
    assert run.path.read_text().startswith(before)
    assert run.deploys == [(domain_cmd.STAGES, False)]
    assert "certificate_issue" not in run.deploys[0][0]  # no DNS applied: no ACME issuance for the new names
    assert "new.example.com\tproduction" in (run("list") == 0 and capsys.readouterr().out)


def test_existing_and_hostile_domains_change_nothing(project, monkeypatch, capsys):
    run = _Run(project, monkeypatch)
    before = run.path.read_text()
    assert run("add", "EXAMPLE.net", "--env", "production") == 1
    assert "already a domain of this environment: refused" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("add", "x.org\nusers = []", "--env", "production")
    assert run.path.read_text() == before and run.deploys == []


def test_domains_from_all_py_are_kept(project, monkeypatch):
    """The environment file sets no `domains` (all.py does): the block records the whole list."""
    project.files["production.py"] = project.files["production.py"].replace(
        'domains = ["example.org", "example.net"]', "")
    project.append("all.py", 'domains = ["example.org", "example.net"]')
    run = _Run(project, monkeypatch)
    assert run("add", "third.example", "--env", "production", "--no-deploy") == 0
    assert load_group_data(run.path)["domains"] == ["example.org", "example.net", "third.example"]
    _, envs = check_environments(project.groups, base_dir=project.root)
    assert envs["production"].domains == ["example.org", "example.net", "third.example"]


def test_a_dry_run_restores_the_file(project, monkeypatch):
    run = _Run(project, monkeypatch)
    before = run.path.read_text()
    assert run("add", "dry.example", "--env", "production", "--dry") == 0
    assert run.path.read_text() == before
    assert run.deploys == [(domain_cmd.STAGES, True)]


def test_a_zone_the_provider_lacks_is_named_and_nothing_changes(project, monkeypatch, capsys):
    import mailstead.dns.providers as providers
    from mailstead.dns.providers.base import ProviderError

    class NoZone:
        def list_records(self, zone, wanted=None):
            raise ProviderError(zone, [], "404 Could not find domain")

    monkeypatch.setattr(providers, "from_settings", lambda dns, secrets_dir: NoZone())
    _, envs = project.check_environments()
    message = domain_cmd.zone_problem(envs["production"], "new.example", "production", "inventory.py")
    assert "has no zone new.example" in message and "Create the zone new.example" in message
    assert "domain add new.example --env production" in message

    run = _Run(project, monkeypatch)
    run.zone_missing = "no zone"
    before = run.path.read_text()
    assert run("add", "new.example", "--env", "production") == 1
    assert "problem: no zone" in capsys.readouterr().err
    assert run.path.read_text() == before and run.deploys == []


def test_a_second_load_of_the_inventory_sees_the_edit(tmp_path, monkeypatch):
    """pyinfra caches compiled files by name: the commands' validation after an edit must run the new text."""
    from mailstead.inventory import load_inventory

    (tmp_path / "group_data").mkdir()
    (tmp_path / "inventory.py").write_text('production = ["mx1.example.org"]\n')
    path = tmp_path / "group_data" / "production.py"
    path.write_text(FILE)
    monkeypatch.chdir(tmp_path)
    assert load_inventory("inventory.py").get_group_data("production")["domains"] == ["example.org"]
    groupdata.edit(path, domains=["example.net"])
    assert load_inventory("inventory.py").get_group_data("production")["domains"] == ["example.org", "example.net"]


def test_an_added_domain_authorizes_its_dmarc_reports_to_the_first_domain():
    """DMARC reports of every domain go to the report address (postmaster@ the first domain by default); a
    receiver sends another domain's reports there only when that domain publishes the RFC 7489 7.1 record."""
    from dns_helpers import by_key, make_env

    from mailstead.dns.records import compute
    from mailstead.policies import dmarc_report_domains

    assert dmarc_report_domains({"rua": "mailto:a@Example.ORG, mailto:b@x.example!10m", "ruf": "mailto:a@example.org"}) \
        == ["example.org", "x.example"]
    recs = by_key(compute(make_env(domains=["example.org", "added.example"])))
    assert recs[("added.example._report._dmarc.example.org", "TXT")].values == ('"v=DMARC1"',)
    assert not [k for k in recs if "._report._dmarc." in k[0] and not k[0].startswith("added.example.")]
    # a report address outside the environment's domains: not ours to authorize
    outside = make_env(domains=["example.org", "added.example"], dmarc={"rua": "mailto:reports@elsewhere.example"})
    assert not [k for k in by_key(compute(outside)) if "._report._dmarc." in k[0]]
