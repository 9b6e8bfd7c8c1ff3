"""Hetzner adapter against a local fake of the Hetzner Cloud API.

The real API (api.hetzner.cloud) cannot be reached from here, so ``FakeHetzner`` implements the documented
request/response shapes: https://docs.hetzner.cloud/reference/cloud#zone-rrsets (list with
``meta.pagination``, create, delete), https://docs.hetzner.cloud/reference/cloud#zone-rrset-actions
(``actions/set_records``, ``actions/change_ttl``), actions polled at ``/zones/actions/{id}``, errors as
``{"error": {"code", "message"}}``, 429 ``rate_limit_exceeded`` with ``RateLimit-Reset``, TXT values as
quoted strings. The same paths are used by the official client hcloud-python (hcloud/zones/client.py).
"""

from __future__ import annotations

import math
import time

import pytest

from mailstead.dns.plan import ApplyError
from mailstead.dns.providers.hetzner import Hetzner
from dns_helpers import FakeAPI, make_env, no_sleep, run_stage as run


class FakeHetzner(FakeAPI):
    def __init__(self):
        super().__init__()
        self.zones = {"example.org": {"id": 42, "ttl": 3600, "rrsets": {}}}
        self.actions: dict[int, int] = {}  # id -> polls left before success
        self.next_action = 1
        self.reject: dict[tuple[str, str], str] = {}

    def err(self, status, code, message):
        return status, {}, {"error": {"code": code, "message": message, "details": {}}}

    def action(self, command, running=False):
        aid = self.next_action
        self.next_action += 1
        self.actions[aid] = 1 if running else 0
        return {"id": aid, "command": command, "status": "running" if running else "success", "progress": 0,
                "error": None}

    def rrset_json(self, zone, name, rtype):
        rr = self.zones[zone]["rrsets"][(name, rtype)]
        return {"id": f"{name}/{rtype}", "name": name, "type": rtype, "ttl": rr["ttl"], "labels": {},
                "protection": {"change": False}, "zone": self.zones[zone]["id"],
                "records": [{"value": v, "comment": None} for v in rr["records"]]}

    def throttled(self):
        return 429, {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0",
                     "RateLimit-Reset": str(math.ceil(time.time()) + 2)}, \
            {"error": {"code": "rate_limit_exceeded", "message": "limit of 3600 requests per hour reached"}}

    def handle(self, method, path, query, headers, body):
        if headers.get("Authorization") != f"Bearer {self.token}":
            return self.err(401, "unauthorized", "unable to authenticate")
        parts = path.strip("/").split("/")
        assert parts[0] == "v1"
        parts = parts[1:]
        if parts[:2] == ["zones", "actions"]:
            aid = int(parts[2])
            left = self.actions[aid]
            self.actions[aid] = max(0, left - 1)
            return 200, {}, {"action": {"id": aid, "status": "running" if left else "success", "error": None}}
        zone = parts[1]
        if zone not in self.zones:
            return self.err(404, "not_found", "zone not found")
        z = self.zones[zone]
        if len(parts) == 2:
            return 200, {}, {"zone": {"id": z["id"], "name": zone, "ttl": z["ttl"], "mode": "primary"}}
        if len(parts) == 3 and method == "GET":
            page, per_page = int(query.get("page", ["1"])[0]), int(query.get("per_page", ["25"])[0])
            per_page = min(per_page, self.max_per_page)
            keys = sorted(z["rrsets"])
            last = max(1, math.ceil(len(keys) / per_page))
            chunk = keys[(page - 1) * per_page: page * per_page]
            return 200, {}, {"rrsets": [self.rrset_json(zone, n, t) for n, t in chunk],
                             "meta": {"pagination": {"page": page, "per_page": per_page,
                                                     "previous_page": page - 1 or None,
                                                     "next_page": page + 1 if page < last else None,
                                                     "last_page": last, "total_entries": len(keys)}}}
        if len(parts) == 3 and method == "POST":
            key = (body["name"], body["type"])
            if key in z["rrsets"]:
                return self.err(409, "uniqueness_error", "rrset already exists")
            bad = self.validate(key, body.get("records", []))
            if bad:
                return bad
            z["rrsets"][key] = {"ttl": body.get("ttl"), "records": [r["value"] for r in body["records"]]}
            return 201, {}, {"rrset": self.rrset_json(zone, *key), "action": self.action("create_rrset", running=True)}
        key = (parts[3], parts[4])
        if key not in z["rrsets"]:
            return self.err(404, "not_found", f"rrset {key[0]}/{key[1]} not found")
        if len(parts) == 5 and method == "DELETE":
            del z["rrsets"][key]
            return 201, {}, {"action": self.action("delete_rrset")}
        if parts[5:] == ["actions", "set_records"]:
            bad = self.validate(key, body["records"])
            if bad:
                return bad
            z["rrsets"][key]["records"] = [r["value"] for r in body["records"]]
            return 201, {}, {"action": self.action("set_rrset_records")}
        if parts[5:] == ["actions", "change_ttl"]:
            z["rrsets"][key]["ttl"] = body["ttl"]
            return 201, {}, {"action": self.action("change_rrset_ttl")}
        return self.err(404, "not_found", "no such endpoint")

    max_per_page = 100

    def validate(self, key, records):
        if key in self.reject:
            return self.err(422, "invalid_input", self.reject[key])
        if key[1] == "TXT" and any(not r["value"].startswith('"') for r in records):
            return self.err(422, "invalid_input", "TXT record values must be quoted")
        return None


@pytest.fixture
def fake():
    f = FakeHetzner()
    # the zone owner's own records, which mailstead must never touch
    f.zones["example.org"]["rrsets"][("@", "TXT")] = {"ttl": None, "records": ['"google-site-verification=abc"']}
    f.zones["example.org"]["rrsets"][("www", "A")] = {"ttl": 600, "records": ["198.51.100.80"]}
    f.zones["example.org"]["rrsets"][("@", "NS")] = {"ttl": None, "records": ["hydrogen.ns.hetzner.com."]}
    yield f
    f.close()


def provider(fake, waits=None):
    p = Hetzner(FakeAPI.token, api_url=fake.url + "/v1", sleep=no_sleep(waits if waits is not None else []))
    p.per_page = 7  # small pages: the listing must follow meta.pagination.next_page
    p.action_poll_interval = 0
    return p



def test_full_apply_keeps_foreign_records_and_second_run_writes_nothing(fake, tmp_path):
    env = make_env(secrets_dir=str(tmp_path))
    p = provider(fake)
    plan = run(env, p)
    assert plan.changes and all(c.action in ("add", "change") for c in plan.changes)
    zone = fake.zones["example.org"]["rrsets"]
    assert zone[("www", "A")] == {"ttl": 600, "records": ["198.51.100.80"]}
    apex_txt = zone[("@", "TXT")]["records"]
    assert '"google-site-verification=abc"' in apex_txt
    assert any(v.startswith('"v=spf1 ') for v in apex_txt) and len(apex_txt) == 2
    assert zone[("@", "MX")]["records"] and zone[("@", "NS")]["records"] == ["hydrogen.ns.hetzner.com."]
    polls = [path for m, path in fake.requests if path.startswith("/v1/zones/actions/")]
    assert polls and all(polls.count(x) == 2 for x in polls)  # each running action polled until success

    p2 = provider(fake)
    before = len(fake.write_requests())
    again = run(env, p2)
    assert again.empty and p2.calls["write"] == 0 and len(fake.write_requests()) == before
    assert p2.calls["read"] >= 2  # paginated listing


def test_one_setting_change_is_one_call(fake, tmp_path):
    run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    p = provider(fake)
    plan = run(make_env(secrets_dir=str(tmp_path), dmarc={"p": "quarantine"}), p)
    assert [(c.action, c.name, c.type) for c in plan.changes] == [("change", "_dmarc.example.org", "TXT")]
    assert p.calls["write"] == 1
    assert fake.write_requests()[-1] == ("POST", "/v1/zones/example.org/rrsets/_dmarc/TXT/actions/set_records")


def test_500_on_third_write_then_next_run_completes(fake, tmp_path):
    env = make_env(secrets_dir=str(tmp_path))
    fake.fail_write = 3
    with pytest.raises(ApplyError) as exc:
        run(env, provider(fake))
    assert "HTTP 500" in str(exc.value) and "injected failure" in str(exc.value)
    assert len(exc.value.records) == 1  # the error names the one record whose write failed
    name, rtype = exc.value.records[0]
    assert name in str(exc.value) and rtype in str(exc.value)
    fake.fail_write = None
    p = provider(fake)
    plan = run(env, p)
    assert plan.changes and p.calls["write"] >= 1
    final = provider(fake)
    assert run(env, final).empty and final.calls["write"] == 0
    assert fake.zones["example.org"]["rrsets"][("www", "A")]["records"] == ["198.51.100.80"]


def test_provider_error_names_the_record_and_the_message(fake, tmp_path):
    fake.reject[("_dmarc", "TXT")] = "record value is invalid"
    with pytest.raises(ApplyError) as exc:
        run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    msg = str(exc.value)
    assert "_dmarc.example.org TXT" in msg and "invalid_input: record value is invalid" in msg
    assert FakeAPI.token not in msg


def test_rate_limit_waits_until_reset_and_retries(fake, tmp_path):
    waits = []
    fake.throttle = 2
    run(make_env(secrets_dir=str(tmp_path)), provider(fake, waits))
    waits = [w for w in waits if w > 0]  # (action polls sleep 0 here)
    assert len(waits) == 2 and all(0 < w <= 3 for w in waits)  # RateLimit-Reset is ~2 s ahead
    assert fake.requests[0] == fake.requests[2]  # the throttled request was repeated


def test_bad_token_is_an_error_without_the_token(fake, tmp_path):
    p = Hetzner("wrong", api_url=fake.url + "/v1", sleep=no_sleep([]))
    with pytest.raises(ApplyError) as exc:
        run(make_env(secrets_dir=str(tmp_path)), p)
    assert "401" in str(exc.value) and "unable to authenticate" in str(exc.value) and "wrong" not in str(exc.value)


def test_stale_record_mailstead_published_is_deleted_foreign_never(fake, tmp_path):
    trap = ("mx9.example.org", {"ipv4": "198.51.100.90", "spamtrap_position": "last"})
    from dns_helpers import MAIL

    run(make_env(hosts=[MAIL, trap], secrets_dir=str(tmp_path)), provider(fake))
    assert ("mx9", "A") in fake.zones["example.org"]["rrsets"]
    p = provider(fake)
    plan = run(make_env(hosts=[MAIL], secrets_dir=str(tmp_path)), p)
    assert ("delete", "mx9.example.org", "A") in [(c.action, c.name, c.type) for c in plan.changes]
    assert ("mx9", "A") not in fake.zones["example.org"]["rrsets"]
    assert ("www", "A") in fake.zones["example.org"]["rrsets"]
