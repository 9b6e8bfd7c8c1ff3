"""DNS against the lab's real authoritative server: PowerDNS (HTTP API) and RFC 2136 (TSIG) on infra.lab.test.

The PowerDNS API and port 53 of infra are reachable only inside the lab's network namespace, so each step
runs tests/lab/dns_driver.py there (``helpers.drive``, ``labctl net``-style ``ip netns exec``): it loads the
lab's production environment through the lab's inventory (tests/lab/inventory.py), runs
``mailstead.dns.stage`` and answers with JSON (plan, read/write call counts, resolver answers from the lab
resolver 198.51.100.1).

Run with the lab id of your choice (MAILSTEAD_LAB_ID); the tests add and remove their own zones
(zone1.test .. zone3.test) and seed foreign records in production.test and rfc2136.test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers import drive, installed_dkim_keys, pebble_root

FOREIGN_TXT = '"google-site-verification=lab-foreign-token"'
FOREIGN_WWW = "198.51.100.80"

pytestmark = pytest.mark.lab


# ------------------------------------------------------------------------------------ helpers
def _key(rtype, value):
    from mailstead.dns.records import value_key

    return value_key(rtype, value)


def answered_all(result, records):
    missing = []
    for name, rtype, _ttl, values in records:
        got = {_key(rtype, v) for v in result["answers"].get(f"{name} {rtype}", [])}
        want = {_key(rtype, v) for v in values}
        if not want <= got:
            missing.append((name, rtype, sorted(want - got)))
    return missing


def tsig_dns(lab) -> dict:
    st = lab.status()
    tsig = json.loads(Path(st["tsig_file"]).read_text())
    return {"provider": "rfc2136", "server": "198.51.100.10", "tsig_key_name": tsig["name"],
            "tsig_algorithm": tsig["algorithm"], "secret_file": st["tsig_file"]}


# ------------------------------------------------------------------------------------ tests
def test_powerdns_full_apply_foreign_records_survive_and_second_apply_writes_nothing(lab):
    zone = "production.test"
    first = drive(lab, seed=[[zone, "production.test", "TXT", 60, [FOREIGN_TXT]],
                             [zone, "www.production.test", "A", 60, [FOREIGN_WWW]]],
                  stage="apply", records=True, dkim=True)
    assert "error" not in first, first.get("error")
    assert first["calls"]["write"] <= 1  # one PATCH for the zone (0 if an earlier run applied it)
    records = [r for r in first["records"] if r[0] == zone or r[0].endswith("." + zone)]
    assert len(records) >= 20
    wanted = [[n, t] for n, t, _, _ in records] + [[zone, "TXT"], [f"www.{zone}", "A"]]
    res = drive(lab, resolve=wanted)
    assert answered_all(res, records) == []  # every computed record, through the lab resolver
    apex_txt = {_key("TXT", v) for v in res["answers"][f"{zone} TXT"]}
    assert _key("TXT", FOREIGN_TXT) in apex_txt and any(v.startswith("v=spf1 ") for v in apex_txt)
    assert res["answers"][f"www.{zone} A"] == [FOREIGN_WWW]
    mx = sorted(res["answers"][f"{zone} MX"])
    assert mx == ["10 trap1.production.test.", "20 mail.production.test.", "30 trap2.production.test."]
    for sel, txt in first["dkim"][zone].items():  # both DKIM keys, matching the private keys on disk
        got = res["answers"][f"{sel}._domainkey.{zone} TXT"]
        assert [_key("TXT", v) for v in got] == [txt]

    again = drive(lab, stage="apply")
    assert again["changes"] == [] and again["calls"]["write"] == 0


def test_powerdns_one_setting_change_is_a_one_record_plan_and_apply(lab):
    drive(lab, stage="apply")
    plan = drive(lab, stage="plan", dmarc={"p": "quarantine", "np": "reject", "adkim": "s", "aspf": "s",
                                          "rua": "mailto:postmaster@production.test"})
    assert plan["changes"] == [["change", "_dmarc.production.test", "TXT"]] and plan["calls"]["write"] == 0
    applied = drive(lab, stage="apply", dmarc={"p": "quarantine", "np": "reject", "adkim": "s", "aspf": "s",
                                               "rua": "mailto:postmaster@production.test"},
                    resolve=[["_dmarc.production.test", "TXT"]])
    assert applied["changes"] == plan["changes"] and applied["calls"]["write"] == 1
    assert "p=quarantine" in applied["answers"]["_dmarc.production.test TXT"][0]
    back = drive(lab, stage="apply")
    assert back["changes"] == [["change", "_dmarc.production.test", "TXT"]]


def test_powerdns_500_on_the_third_write_then_the_next_run_completes(lab, tmp_path):
    zones = ["zone1.test", "zone2.test", "zone3.test"]
    secrets = str(tmp_path / "secrets")  # fresh keys and state: this environment is new
    try:
        drive(lab, create_zones=zones)
        failed = drive(lab, domains=zones, secrets_dir=secrets, stage="apply", fail_patch=3)
        assert "injected by the lab test proxy" in failed["error"]
        assert failed["error_records"] and all(n == "zone3.test" or n.endswith(".zone3.test")
                                               for n, _ in failed["error_records"])
        assert failed["calls"]["write"] == 3
        done = drive(lab, domains=zones, secrets_dir=secrets, stage="apply")
        assert done["changes"] and all(n == "zone3.test" or n.endswith(".zone3.test") for _, n, _ in done["changes"])
        final = drive(lab, domains=zones, secrets_dir=secrets, stage="apply", records=True)
        assert final["changes"] == [] and final["calls"]["write"] == 0
        recs = [r for r in final["records"] if r[0].endswith("zone3.test")]
        res = drive(lab, resolve=[[n, t] for n, t, _, _ in recs])
        assert answered_all(res, recs) == []
    finally:
        drive(lab, delete_zones=zones)


def test_rfc2136_same_scenario(lab):
    zone = "rfc2136.test"
    dnsp = tsig_dns(lab)
    first = drive(lab, domains=[zone], dns=dnsp,
                  seed=[[zone, zone, "TXT", 60, [FOREIGN_TXT]], [zone, f"www.{zone}", "A", 60, [FOREIGN_WWW]]],
                  stage="apply", records=True)
    assert "error" not in first, first.get("error")
    assert first["calls"]["write"] <= 1  # one signed UPDATE message for the zone
    records = [r for r in first["records"] if r[0] == zone or r[0].endswith("." + zone)]
    res = drive(lab, resolve=[[n, t] for n, t, _, _ in records] + [[zone, "TXT"], [f"www.{zone}", "A"]])
    assert answered_all(res, records) == []
    assert _key("TXT", FOREIGN_TXT) in {_key("TXT", v) for v in res["answers"][f"{zone} TXT"]}
    assert res["answers"][f"www.{zone} A"] == [FOREIGN_WWW]

    again = drive(lab, domains=[zone], dns=dnsp, stage="apply")
    assert again["changes"] == [] and again["calls"]["write"] == 0

    dmarc = {"p": "quarantine", "np": "reject", "adkim": "s", "aspf": "s", "rua": "mailto:postmaster@production.test"}
    one = drive(lab, domains=[zone], dns=dnsp, dmarc=dmarc, stage="apply", resolve=[[f"_dmarc.{zone}", "TXT"]])
    assert one["changes"] == [["change", f"_dmarc.{zone}", "TXT"]] and one["calls"]["write"] == 1
    assert "p=quarantine" in one["answers"][f"_dmarc.{zone} TXT"][0]
    drive(lab, domains=[zone], dns=dnsp, stage="apply")


def test_rfc2136_unsigned_update_is_refused_and_named(lab):
    dnsp = dict(tsig_dns(lab))
    dnsp["tsig_key_name"] = "not-a-lab-key"
    res = drive(lab, domains=["rfc2136.test"], dns=dnsp, dmarc={"p": "none"}, stage="apply")
    assert "error" in res and "rfc2136" in res["error"]


def test_dkim_rotation_publishes_then_retires_through_dns(lab, tmp_path):
    from mailstead import dkim

    zone, secrets = "rot.test", str(tmp_path / "secrets")
    try:
        drive(lab, create_zones=[zone])
        drive(lab, domains=[zone], secrets_dir=secrets, stage="apply")
        old = {k.selector for k in dkim.keys(secrets, zone)}
        new = {k.selector for k in dkim.rotate(secrets, zone)}
        added = drive(lab, domains=[zone], secrets_dir=secrets, stage="apply",
                      resolve=[[f"{s}._domainkey.{zone}", "TXT"] for s in old | new])
        assert sorted(added["changes"]) == sorted(["add", f"{s}._domainkey.{zone}", "TXT"] for s in new)
        assert all(added["answers"][f"{s}._domainkey.{zone} TXT"] for s in old | new)  # both in DNS
        dkim.activate(secrets, zone)
        assert drive(lab, domains=[zone], secrets_dir=secrets, stage="apply")["changes"] == []
        dkim.retire(secrets, zone)
        gone = drive(lab, domains=[zone], secrets_dir=secrets, stage="apply",
                     resolve=[[f"{s}._domainkey.{zone}", "TXT"] for s in old | new])
        assert sorted(gone["changes"]) == sorted(["delete", f"{s}._domainkey.{zone}", "TXT"] for s in old)
        assert not any(gone["answers"][f"{s}._domainkey.{zone} TXT"] for s in old)
        assert all(gone["answers"][f"{s}._domainkey.{zone} TXT"] for s in new)
    finally:
        drive(lab, delete_zones=[zone])


def test_mta_sts_policy_served_over_https_matches_the_mx_set_and_the_txt_id(lab, deployed, tmp_path):
    """Needs deploy.py to run tasks.tls, tasks.nginx and the DNS stage on the lab."""
    import hashlib

    st = lab.status()
    # staging's certificate comes from the lab CA, production's from the lab's ACME CA (pebble)
    ca = tmp_path / "trust.pem"
    ca.write_text((Path(st["state_dir"]) / "secrets" / "lab-ca" / "ca.crt").read_text()
                  + Path(pebble_root(lab, st, tmp_path / "pebble.pem")).read_text())
    for d in [x["domain"] for x in st["domains"]]:
        argv = lab.net_argv(["curl", "-sSf", "--cacert", str(ca), f"https://mta-sts.{d}/.well-known/mta-sts.txt"])
        body = subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout.decode()  # keep CRLF
        env = [h for h in st["hosts"] if h["environment"] == lab_env(st, d)]
        real = sorted(h["name"] for h in env if "mailservers" in h["roles"])
        assert [ln[4:] for ln in body.split("\r\n") if ln.startswith("mx: ")] == real
        assert body.startswith("version: STSv1\r\nmode: enforce\r\n") and body.endswith("\r\n")
        res = drive(lab, resolve=[[f"_mta-sts.{d}", "TXT"]])
        (txt,) = res["answers"][f"_mta-sts.{d} TXT"]
        assert f"id={hashlib.sha256(body.encode()).hexdigest()[:20]}" in txt


def test_dkim_keys_on_mail_hosts_are_the_secrets_and_survive_a_redeploy(lab, deployed, redeployed):
    """Needs deploy.py to run tasks.dkim (after rspamd is installed, for the _rspamd group)."""
    import hashlib

    from mailstead import dkim

    st = lab.status()
    secrets = Path(st["state_dir"]) / "secrets"
    for h in [h for h in st["hosts"] if "mailservers" in h["roles"]]:
        domain = next(d["domain"] for d in st["domains"] if d["environment"] == h["environment"])
        want = {f"{domain}.{k.selector}.key": hashlib.sha256(k.path.read_bytes()).hexdigest()
                for k in dkim.published_keys(secrets, domain)}
        assert {k.algorithm for k in dkim.active_keys(secrets, domain)} == {"rsa", "ed25519"}
        got = installed_dkim_keys(lab, h["short"])
        assert {n: v[2] for n, v in got.items()} == want  # same bytes as the deploy machine's secrets
        for mode, owner, _ in got.values():
            assert mode == "640" and owner in ("root:_rspamd", "root:root")
    keys_ops = [n for n, hosts in redeployed.changed().items() if n.startswith("DKIM")]
    assert keys_ops == []  # the second deploy keeps the same selectors and keys


def lab_env(st, domain):
    return next(x["environment"] for x in st["domains"] if x["domain"] == domain)

