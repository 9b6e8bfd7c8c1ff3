"""Plan: the diff between desired records and a zone's contents, respecting what mailstead owns."""

from __future__ import annotations

import stat

from mailstead.dns.plan import diff_zone, load_state, save_state, split_by_zone, state_path
from mailstead.dns.records import Record, txt_value

Z = "example.org"


def R(name, rtype, *values, ttl=3600):
    return Record.make(name, rtype, ttl, values)


DESIRED = [
    R("example.org", "MX", "20 mail.example.org."),
    R("example.org", "TXT", txt_value("v=spf1 ip4:198.51.100.10 -all")),
    R("example.org", "CAA", '0 issue "letsencrypt.org"'),
    R("_dmarc.example.org", "TXT", txt_value("v=DMARC1; p=reject")),
    R("mail.example.org", "A", "198.51.100.10"),
]


def actions(zp):
    return sorted((c.action, c.name, c.type) for c in zp.changes)


def test_empty_zone_plans_every_record():
    zp = diff_zone(Z, DESIRED, [])
    assert actions(zp) == sorted(("add", r.name, r.type) for r in DESIRED)


def test_unchanged_zone_plans_nothing_even_if_the_provider_spells_values_differently():
    current = [
        R("EXAMPLE.org.", "MX", "20 MAIL.example.org."),
        R("example.org", "TXT", '"v=spf1 ip4:198.51.100.10 " "-all"', '"google-site-verification=abc"'),
        R("example.org", "CAA", '0 issue "letsencrypt.org"', '0 issue "pki.goog"'),
        R("_dmarc.example.org", "TXT", '"v=DMARC1; p=reject"'),
        R("mail.example.org", "A", "198.51.100.10"),
        R("www.example.org", "A", "198.51.100.80"),
    ]
    assert diff_zone(Z, DESIRED, current).changes == []


def test_shared_apex_txt_keeps_foreign_values_and_replaces_only_spf():
    current = [R("example.org", "TXT", '"v=spf1 mx -all"', '"google-site-verification=abc"', ttl=300)]
    zp = diff_zone(Z, DESIRED, current)
    (c,) = [c for c in zp.changes if c.key == ("example.org", "TXT")]
    assert c.action == "change" and c.ttl == 300  # the owner's TTL of a shared set is kept
    assert set(c.new) == {'"google-site-verification=abc"', '"v=spf1 ip4:198.51.100.10 -all"'}
    assert '"v=spf1 mx -all"' in c.describe() and "google" not in c.describe().split("\n")[1]


def test_fully_owned_set_is_replaced():
    current = [R("_dmarc.example.org", "TXT", '"v=DMARC1; p=none"')]
    (c,) = [c for c in diff_zone(Z, DESIRED, current).changes if c.name == "_dmarc.example.org"]
    assert c.action == "change" and c.new == ('"v=DMARC1; p=reject"',)


def test_ttl_change_is_a_change():
    current = [R("mail.example.org", "A", "198.51.100.10", ttl=60)]
    (c,) = [c for c in diff_zone(Z, DESIRED, current).changes if c.name == "mail.example.org"]
    assert (c.action, c.old_ttl, c.ttl) == ("change", 60, 3600)


def test_foreign_names_are_never_deleted_without_a_state_record():
    current = [R("www.example.org", "A", "198.51.100.80"), R("old._domainkey.example.org", "TXT", '"v=DKIM1; p="')]
    zp = diff_zone(Z, DESIRED, current, previous_state={})
    assert not [c for c in zp.changes if c.action == "delete"]


def test_stale_records_mailstead_published_are_deleted_only_when_unchanged():
    previous = {
        ("r2025._domainkey.example.org", "TXT"): {"ttl": 3600, "values": ['"v=DKIM1; k=rsa; p=AAA"'], "shared": False},
        ("mx9.example.org", "A"): {"ttl": 3600, "values": ["198.51.100.90"], "shared": False},
        ("gone.example.org", "A"): {"ttl": 3600, "values": ["198.51.100.91"], "shared": False},
    }
    current = [
        R("r2025._domainkey.example.org", "TXT", '"v=DKIM1; k=rsa; p=AAA"'),
        R("mx9.example.org", "A", "198.51.100.99"),  # someone repointed it since: not ours to delete
    ]
    zp = diff_zone(Z, DESIRED, current, previous)
    deletes = [(c.name, c.type) for c in zp.changes if c.action == "delete"]
    assert deletes == [("r2025._domainkey.example.org", "TXT")]
    assert any("mx9.example.org A" in n and "left alone" in n for n in zp.notes)


def test_old_caa_issuer_of_ours_is_removed_foreign_issuer_kept():
    previous = {("example.org", "CAA"): {"ttl": 3600, "values": ['0 issue "old-ca.example"'], "shared": True}}
    current = [R("example.org", "CAA", '0 issue "old-ca.example"', '0 issue "pki.goog"')]
    (c,) = [c for c in diff_zone(Z, DESIRED, current, previous).changes if c.type == "CAA"]
    assert set(c.new) == {'0 issue "pki.goog"', '0 issue "letsencrypt.org"'}


def test_records_are_split_by_longest_zone_and_outsiders_reported():
    recs = [R("mail.example.org", "A", "198.51.100.10"), R("x.sub.example.org", "A", "198.51.100.11"),
            R("mail.example.net", "A", "198.51.100.12")]
    by_zone, outside = split_by_zone(recs, ["example.org", "sub.example.org"])
    assert [r.name for r in by_zone["example.org"]] == ["mail.example.org"]
    assert [r.name for r in by_zone["sub.example.org"]] == ["x.sub.example.org"]
    assert [r.name for r in outside] == ["mail.example.net"]


def test_state_file_is_private_and_round_trips(tmp_path):
    p = state_path(tmp_path, "production", "example.org")
    state = {("mail.example.org", "A"): {"ttl": 3600, "values": ["198.51.100.10"], "shared": False}}
    save_state(p, "example.org", state)
    assert load_state(p) == state
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_plan_render_is_readable():
    zp = diff_zone(Z, DESIRED, [R("_dmarc.example.org", "TXT", '"v=DMARC1; p=none"')])
    from mailstead.dns.plan import Plan

    text = Plan("powerdns", [zp]).render()
    assert "zone example.org (powerdns): 5 change(s)" in text
    assert "~ change _dmarc.example.org TXT" in text and '- "v=DMARC1; p=none"' in text
    assert "+ add    mail.example.org A ttl=3600" in text


def test_foreign_cname_blocks_the_name_instead_of_being_deleted():
    desired = DESIRED + [R("autoconfig.example.org", "A", "198.51.100.10")]
    current = [R("autoconfig.example.org", "CNAME", "autoconfig.hoster.example.")]
    zp = diff_zone(Z, desired, current)
    assert not [c for c in zp.changes if c.name == "autoconfig.example.org"]
    assert any("autoconfig.example.org has a CNAME" in n for n in zp.notes)


def test_a_lab_address_is_never_contacted_from_outside_the_lab_network():
    # In this (root) network namespace the lab prefix is not on-link: a request would leave through the
    # default route. The provider must refuse before sending anything.
    import pytest

    from mailstead.dns.providers.base import ProviderError
    from mailstead.dns.providers.powerdns import PowerDNS

    p = PowerDNS("http://198.51.100.10:8081", "key")
    with pytest.raises(ProviderError, match="refusing to contact 198.51.100.10"):
        p.list_records("example.org")
    assert p.calls == {"read": 0, "write": 0}
    PowerDNS("http://127.0.0.1:9", "key")  # loopback is fine (the unit-test fakes live there)
