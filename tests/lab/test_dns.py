"""DNS against the lab's real authoritative server: PowerDNS (HTTP API) and RFC 2136 (TSIG) on infra.lab.test.

The PowerDNS API and port 53 of infra are reachable only inside the lab's network namespace, so each step
runs this file as a driver there (``labctl net``-style ``ip netns exec``): it loads the lab's production
environment through the lab's inventory (tests/lab/inventory.py), runs ``mailstead.dns.stage`` and answers
with JSON (plan, read/write call counts, resolver answers from the lab resolver 198.51.100.1).

Run with the lab id of your choice (MAILSTEAD_LAB_ID); the tests add and remove their own zones
(zone1.test .. zone3.test) and seed foreign records in production.test and rfc2136.test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOLVER = "198.51.100.1"
LAB_INVENTORY = "tests/lab/inventory.py"  # relative to ROOT, where the driver runs
FOREIGN_TXT = '"google-site-verification=lab-foreign-token"'
FOREIGN_WWW = "198.51.100.80"

pytestmark = pytest.mark.lab


# ------------------------------------------------------------------------------------ the driver
def _driver(req: dict) -> dict:
    """Runs inside the lab netns."""
    import io
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import dns.resolver
    import requests

    from mailstead.dns import desired_records, stage
    from mailstead.dns.plan import ApplyError, Change
    from mailstead.dns.providers import from_settings, read_secret
    from mailstead.dns.providers.powerdns import PowerDNS
    from mailstead.inventory import load_environment_settings
    from mailstead.settings import DnsProvider

    env = load_environment_settings(req.get("env", "production"), LAB_INVENTORY)
    update = {}
    for k in ("domains", "dmarc", "secrets_dir"):
        if k in req:
            update[k] = req[k]
    if "dns" in req:
        update["dns"] = DnsProvider(**req["dns"])
    env = env.model_copy(update=update)
    out: dict = {}
    pdns_key = read_secret(load_environment_settings("production", LAB_INVENTORY).dns, env.secrets_dir)
    admin = PowerDNS("http://198.51.100.10:8081", pdns_key)

    for z in req.get("create_zones", []):
        admin.delete_zone(z)
        admin.create_zone(z, nameservers=["infra.lab.test."])
    for z in req.get("delete_zones", []):
        admin.delete_zone(z)

    if req.get("seed"):
        seeder = from_settings(env.dns, env.secrets_dir)
        for zone, name, rtype, ttl, values in req["seed"]:
            seeder.apply(zone, [Change("change", name, rtype, ttl, new=tuple(values))])

    provider = from_settings(env.dns, env.secrets_dir)
    proxy = None
    if req.get("fail_patch"):
        upstream, fail_at, count = env.dns.api_url.rstrip("/"), req["fail_patch"], {"PATCH": 0}

        class Proxy(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _do(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "PATCH":
                    count["PATCH"] += 1
                    if count["PATCH"] == fail_at:
                        data = b'{"error": "injected by the lab test proxy"}'
                        self.send_response(500)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                r = requests.request(self.command, upstream + self.path, data=body or None,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_PATCH = do_POST = do_DELETE = do_PUT = _do

        proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        provider = PowerDNS(f"http://127.0.0.1:{proxy.server_address[1]}", pdns_key)

    if "stage" in req:
        buf = io.StringIO()
        try:
            plan = stage(env, dry=req["stage"] == "plan", provider=provider, out=buf)
            out["changes"] = [[c.action, c.name, c.type] for c in plan.changes]
        except ApplyError as exc:
            out["error"] = str(exc)
            out["error_records"] = exc.records
        out["calls"] = provider.calls
        out["output"] = buf.getvalue()
    if req.get("records"):
        out["records"] = [[r.name, r.type, r.ttl, list(r.values)] for r in desired_records(env, create_keys=False)]
    if req.get("dkim"):
        from mailstead import dkim

        out["dkim"] = {d: {k.selector: k.txt() for k in dkim.published_keys(env.secrets_dir, d)} for d in env.domains}
    if req.get("resolve"):
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [req.get("resolver", RESOLVER)]
        res.cache = None
        answers = {}
        for name, rtype in req["resolve"]:
            try:
                ans = res.resolve(name, rtype, raise_on_no_answer=False, lifetime=5)
                answers[f"{name} {rtype}"] = [rd.to_text() for rd in ans.rrset] if ans.rrset else []
            except dns.resolver.NXDOMAIN:
                answers[f"{name} {rtype}"] = []
        out["answers"] = answers
    if proxy:
        proxy.shutdown()
    return out


def drive(lab, **req) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = lab.net_argv([sys.executable, __file__, json.dumps(req)])
    p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


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


def test_mta_sts_policy_served_over_https_matches_the_mx_set_and_the_txt_id(lab, deployed):
    """Needs deploy.py to run tasks.tls, tasks.nginx and the DNS stage on the lab."""
    import hashlib

    st = lab.status()
    ca = Path(st["state_dir"]) / "secrets" / "lab-ca" / "ca.crt"
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


def _installed_keys(lab, host) -> dict[str, tuple[str, str, str]]:
    """{file name: (mode, owner:group, sha256)} of /etc/mailstead/dkim on a lab host."""
    out = lab.exec(host, "sh", "-c", "cd /etc/mailstead/dkim && for f in *.key; do "
                   "printf '%s %s %s:%s ' \"$f\" $(stat -c '%a %U %G' \"$f\"); sha256sum \"$f\" | cut -d' ' -f1; done").stdout
    res = {}
    for line in out.splitlines():
        name, mode, owner, digest = line.split()
        res[name] = (mode, owner, digest)
    return res


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
        got = _installed_keys(lab, h["short"])
        assert {n: v[2] for n, v in got.items()} == want  # same bytes as the deploy machine's secrets
        for mode, owner, _ in got.values():
            assert mode == "640" and owner in ("root:_rspamd", "root:root")
    keys_ops = [n for n, hosts in redeployed.changed().items() if n.startswith("DKIM")]
    assert keys_ops == []  # the second deploy keeps the same selectors and keys


def lab_env(st, domain):
    return next(x["environment"] for x in st["domains"] if x["domain"] == domain)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(_driver(json.loads(sys.argv[1]))))
