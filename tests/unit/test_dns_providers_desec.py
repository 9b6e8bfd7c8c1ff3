"""deSEC adapter against a local fake of the deSEC API.

desec.io cannot be reached from here, so ``FakeDeSEC`` implements the documented shapes:
https://desec.readthedocs.io/en/latest/dns/rrsets.html (RRset objects with ``subname``/``type``/``ttl``/
``records``; bulk ``PATCH /domains/{name}/rrsets/`` where ``records: []`` deletes, applied atomically;
400 answers with one error object per RRset; pagination above 500 RRsets: 400 without ``cursor``,
``Link`` headers with ``rel="first"``/``rel="next"``; minimum TTL 3600) and
https://desec.readthedocs.io/en/latest/rate-limits.html (429 with ``Retry-After``).
"""

from __future__ import annotations


import pytest

from mailstead.dns.plan import ApplyError
from mailstead.dns.providers.desec import DeSEC
from dns_helpers import FakeAPI, make_env, no_sleep, run_stage as run


class FakeDeSEC(FakeAPI):
    page_size = 500

    def __init__(self):
        super().__init__()
        self.rrsets: dict[tuple[str, str], dict] = {}
        self.minimum_ttl = 3600

    def throttled(self):
        return 429, {"Retry-After": "2"}, {"detail": "Request was throttled. Expected available in 2 seconds."}

    def link(self, cursor, rel):
        return f'<{self.url}/api/v1/domains/example.org/rrsets/?cursor={cursor}>; rel="{rel}"'

    def rr(self, key):
        v = self.rrsets[key]
        return {"domain": "example.org", "subname": key[0], "name": (key[0] + "." if key[0] else "") + "example.org.",
                "type": key[1], "ttl": v["ttl"], "records": v["records"], "created": "2026-11-26T10:00:00Z",
                "touched": "2026-11-26T10:00:00Z"}

    def handle(self, method, path, query, headers, body):
        if headers.get("Authorization") != f"Token {self.token}":
            return 401, {}, {"detail": "Invalid token."}
        if not path.startswith("/api/v1/domains/example.org/rrsets/"):
            return 404, {}, {"detail": "Not found."}
        if method == "GET":
            keys = sorted(self.rrsets)
            if "cursor" not in query:
                if len(keys) > self.page_size:
                    return 400, {"Link": self.link("", "first")}, {
                        "detail": f"Pagination required. You can query up to {self.page_size} items at a time "
                                  "({len(keys)} total). Please use the `first` page link (see Link header)."}
                return 200, {}, [self.rr(k) for k in keys]
            start = int(query["cursor"][0] or 0)
            chunk = keys[start:start + self.page_size]
            links = [self.link("", "first")]
            if start + self.page_size < len(keys):
                links.append(self.link(start + self.page_size, "next"))
            return 200, {"Link": ", ".join(links)}, [self.rr(k) for k in chunk]
        if method == "PATCH":
            errors, ok = [], True
            for item in body:
                e = {}
                if item["records"] and item["ttl"] < self.minimum_ttl:
                    e["ttl"] = [f"Ensure this value is greater than or equal to {self.minimum_ttl}."]
                if item["type"] == "TXT" and any(not r.startswith('"') for r in item["records"]):
                    e["records"] = ["Invalid content: TXT records must be quoted."]
                errors.append(e)
                ok = ok and not e
            if not ok:
                return 400, {}, errors  # atomic: nothing applied
            out = []
            for item in body:
                key = (item["subname"], item["type"])
                if item["records"]:
                    self.rrsets[key] = {"ttl": item["ttl"], "records": item["records"]}
                    out.append(self.rr(key))
                else:
                    self.rrsets.pop(key, None)
            return 200, {}, out
        return 405, {}, {"detail": f'Method "{method}" not allowed.'}


@pytest.fixture
def fake():
    f = FakeDeSEC()
    f.rrsets[("", "TXT")] = {"ttl": 3600, "records": ['"google-site-verification=abc"']}
    f.rrsets[("www", "A")] = {"ttl": 3600, "records": ["198.51.100.80"]}
    f.rrsets[("", "NS")] = {"ttl": 3600, "records": ["ns1.desec.io.", "ns2.desec.org."]}
    yield f
    f.close()


def provider(fake, waits=None):
    return DeSEC(FakeAPI.token, api_url=fake.url + "/api/v1", sleep=no_sleep([] if waits is None else waits))



def test_one_bulk_call_min_ttl_foreign_records_kept_and_second_run_writes_nothing(fake, tmp_path):
    env = make_env(secrets_dir=str(tmp_path), dns_ttl=300)  # below deSEC's minimum
    p = provider(fake)
    run(env, p)
    assert p.calls["write"] == 1
    assert all(v["ttl"] >= 3600 for v in fake.rrsets.values())
    assert set(fake.rrsets[("", "TXT")]["records"]) >= {'"google-site-verification=abc"'}
    assert any(r.startswith('"v=spf1') for r in fake.rrsets[("", "TXT")]["records"])
    assert fake.rrsets[("www", "A")]["records"] == ["198.51.100.80"]
    assert fake.rrsets[("", "MX")]["records"] == ["10 mx1.example.org.", "20 mail.example.org.", "30 mx3.example.org."]
    p2 = provider(fake)
    assert run(env, p2).empty and p2.calls["write"] == 0


def test_paginated_listing(fake, tmp_path):
    fake.page_size = 5  # the real limit is 500; a small one exercises the same protocol
    env = make_env(secrets_dir=str(tmp_path))
    run(env, provider(fake))
    p = provider(fake)
    assert run(env, p).empty
    assert p.calls["read"] == 1 + -(-len(fake.rrsets) // 5)  # the refused plain GET + every page


def test_error_names_the_offending_rrset_and_nothing_is_applied(fake, tmp_path):
    fake.minimum_ttl = 7200  # a domain with a higher minimum than the adapter knows
    with pytest.raises(ApplyError) as exc:
        run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    msg = str(exc.value)
    assert "greater than or equal to 7200" in msg and "_dmarc.example.org TXT" in msg
    assert set(fake.rrsets) == {("", "TXT"), ("www", "A"), ("", "NS")}


def test_throttling_honours_retry_after(fake, tmp_path):
    waits = []
    fake.throttle = 2
    run(make_env(secrets_dir=str(tmp_path)), provider(fake, waits))
    assert waits == [2.0, 2.0]
    assert ("", "MX") in fake.rrsets


def test_500_then_next_run_completes(fake, tmp_path):
    fake.fail_write = 1
    with pytest.raises(ApplyError, match="HTTP 500"):
        run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    fake.fail_write = None
    run(make_env(secrets_dir=str(tmp_path)), provider(fake))
    p = provider(fake)
    assert run(make_env(secrets_dir=str(tmp_path)), p).empty and p.calls["write"] == 0
