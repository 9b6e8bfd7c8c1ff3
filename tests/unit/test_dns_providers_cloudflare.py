"""Cloudflare adapter against a local fake of the Cloudflare v4 API.

api.cloudflare.com cannot be reached from here, so ``FakeCloudflare`` implements the documented shapes:
https://developers.cloudflare.com/api/resources/dns/subresources/records/ (records with ``content``,
MX ``priority``, ``data`` objects for SRV/CAA/TLSA; list paginated by ``page``/``per_page`` with
``result_info.total_pages``; envelope ``{"success", "errors", "messages", "result"}``),
https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/batch/ (``deletes``,
``patches``, ``puts``, ``posts`` run in that order in one transaction: all or nothing), zone lookup
``GET /zones?name=``, and 429 with ``Retry-After`` when rate limited.
"""

from __future__ import annotations

import itertools
import math

import pytest

from mailstead.dns.plan import ApplyError
from mailstead.dns.providers.cloudflare import Cloudflare
from dns_helpers import FakeAPI, make_env, no_sleep, run_stage as run

ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"


class FakeCloudflare(FakeAPI):
    def __init__(self):
        super().__init__()
        self.records: dict[str, dict] = {}
        self.ids = (f"{i:032x}" for i in itertools.count(1))
        self.reject_names: dict[str, str] = {}
        self.max_per_page = 100

    def ok(self, result, **extra):
        return 200, {}, {"success": True, "errors": [], "messages": [], "result": result, **extra}

    def fail(self, status, code, message):
        return status, {}, {"success": False, "errors": [{"code": code, "message": message}], "messages": [],
                            "result": None}

    def add(self, rec):
        rec = dict(rec)
        rec["id"] = next(self.ids)
        rec["name"] = rec["name"].rstrip(".")
        rec.setdefault("ttl", 1)
        rec.setdefault("proxied", False)
        d = rec.get("data")
        if rec["type"] == "SRV" and d:
            rec["content"] = f"{d['weight']} {d['port']} {d['target']}"
            rec["priority"] = d["priority"]
        elif rec["type"] == "CAA" and d:
            rec["content"] = f'{d["flags"]} {d["tag"]} "{d["value"]}"'
        elif rec["type"] == "TLSA" and d:
            rec["content"] = f"{d['usage']} {d['selector']} {d['matching_type']} {d['certificate']}"
        self.records[rec["id"]] = rec
        return rec

    def handle(self, method, path, query, headers, body):
        if headers.get("Authorization") != f"Bearer {self.token}":
            return self.fail(403, 10000, "Authentication error")
        parts = path.strip("/").split("/")[2:]  # after client/v4
        if parts == ["zones"]:
            return self.ok([{"id": ZONE_ID, "name": "example.org", "status": "active"}]
                           if query.get("name") == ["example.org"] else [])
        if parts[:1] != ["zones"] or parts[1] != ZONE_ID:
            return self.fail(404, 7003, "Could not route to /zones/..., perhaps your object identifier is invalid?")
        if parts[2:] == ["dns_records"] and method == "GET":
            page, per_page = int(query.get("page", ["1"])[0]), min(int(query.get("per_page", ["100"])[0]), self.max_per_page)
            items = sorted(self.records.values(), key=lambda r: (r["name"], r["type"], r["id"]))
            total_pages = max(1, math.ceil(len(items) / per_page))
            chunk = items[(page - 1) * per_page: page * per_page]
            return self.ok(chunk, result_info={"page": page, "per_page": per_page, "count": len(chunk),
                                               "total_count": len(items), "total_pages": total_pages})
        if parts[2:] == ["dns_records", "batch"] and method == "POST":
            snapshot = {k: dict(v) for k, v in self.records.items()}
            result = {"deletes": [], "patches": [], "puts": [], "posts": []}
            for d in body.get("deletes", []):
                if d["id"] not in self.records:
                    self.records = snapshot
                    return self.fail(400, 81044, f"Record {d['id']} does not exist.")
                result["deletes"].append(self.records.pop(d["id"]))
            for p in body.get("patches", []):
                self.records[p["id"]].update({k: v for k, v in p.items() if k != "id"})
                result["patches"].append(self.records[p["id"]])
            for p in body.get("posts", []):
                if p["name"] in self.reject_names:
                    self.records = snapshot  # one transaction: nothing is applied
                    return self.fail(400, 9005, self.reject_names[p["name"]])
                if p["type"] == "MX" and "priority" not in p:
                    self.records = snapshot
                    return self.fail(400, 9100, "MX records require a priority")
                result["posts"].append(self.add(p))
            return self.ok(result)
        return self.fail(404, 7000, "No route for that URI")


@pytest.fixture
def fake():
    f = FakeCloudflare()
    f.add({"name": "example.org", "type": "TXT", "content": '"google-site-verification=abc"', "ttl": 1})
    f.add({"name": "www.example.org", "type": "A", "content": "198.51.100.80", "ttl": 600, "proxied": True})
    f.add({"name": "example.org", "type": "CAA", "data": {"flags": 0, "tag": "issue", "value": "pki.goog"}, "ttl": 3600})
    for i in range(150):  # a big zone: the listing needs two pages
        f.add({"name": f"host{i}.example.org", "type": "A", "content": f"198.51.100.{i % 250}", "ttl": 300})
    yield f
    f.close()


def provider(fake, waits=None):
    return Cloudflare(FakeAPI.token, api_url=fake.url + "/client/v4", sleep=no_sleep([] if waits is None else waits))



def named(fake, name, rtype):
    return [r for r in fake.records.values() if r["name"] == name and r["type"] == rtype]


def test_one_batch_call_keeps_foreign_records_and_second_run_writes_nothing(fake, tmp_path):
    env = make_env(secrets_dir=str(tmp_path))
    p = provider(fake)
    plan = run(env, p)
    assert len(plan.changes) > 15
    assert p.calls["write"] == 1  # the whole zone in one batch
    assert fake.write_requests() == [("POST", f"/client/v4/zones/{ZONE_ID}/dns_records/batch")]
    txt = {r["content"] for r in named(fake, "example.org", "TXT")}
    assert '"google-site-verification=abc"' in txt and any("v=spf1" in t for t in txt)
    caa = {r["data"]["value"] for r in named(fake, "example.org", "CAA")}
    assert caa == {"pki.goog", "letsencrypt.org"}  # a foreign issuer stays next to ours
    assert named(fake, "www.example.org", "A")[0]["proxied"] is True
    assert len(named(fake, "host149.example.org", "A")) == 1
    mx = sorted((r["priority"], r["content"]) for r in named(fake, "example.org", "MX"))
    assert mx == [(10, "mx1.example.org"), (20, "mail.example.org"), (30, "mx3.example.org")]
    srv = named(fake, "_submissions._tcp.example.org", "SRV")[0]["data"]
    assert (srv["port"], srv["target"]) == (465, "mail.example.org")

    p2 = provider(fake)
    assert run(env, p2).empty and p2.calls["write"] == 0
    assert p2.calls["read"] == 3  # zone id + two pages


def test_one_setting_change_replaces_one_record(fake, tmp_path):
    run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    old = named(fake, "_dmarc.example.org", "TXT")[0]["id"]
    p = provider(fake)
    plan = run(make_env(secrets_dir=str(tmp_path), dmarc={"p": "quarantine"}), p)
    assert [(c.action, c.name) for c in plan.changes] == [("change", "_dmarc.example.org")]
    assert p.calls["write"] == 1
    (rec,) = named(fake, "_dmarc.example.org", "TXT")
    assert rec["id"] != old and "p=quarantine" in rec["content"]


def test_failed_batch_changes_nothing_and_names_the_records(fake, tmp_path):
    fake.reject_names["_dmarc.example.org"] = "DNS name is invalid."
    before = {k: dict(v) for k, v in fake.records.items()}
    with pytest.raises(ApplyError) as exc:
        run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    assert "9005: DNS name is invalid." in str(exc.value) and "_dmarc.example.org TXT" in str(exc.value)
    assert fake.records == before
    del fake.reject_names["_dmarc.example.org"]
    run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    p = provider(fake)
    assert run(make_env(secrets_dir=str(tmp_path)), p).empty and p.calls["write"] == 0


def test_500_on_the_write_then_next_run_completes(fake, tmp_path):
    fake.fail_write = 1
    with pytest.raises(ApplyError, match="HTTP 500"):
        run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    fake.fail_write = None
    run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    p = provider(fake)
    assert run(make_env(secrets_dir=str(tmp_path)), p).empty


def test_rate_limited_requests_are_retried_after_the_given_delay(fake, tmp_path):
    waits = []
    fake.throttle = 3
    run(make_env(secrets_dir=str(tmp_path)), provider(fake, waits))
    assert waits == [1.0, 1.0, 1.0]
