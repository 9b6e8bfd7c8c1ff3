"""Hetzner DNS through the Hetzner Cloud API (the old DNS Console API is shut down).

Documentation: https://docs.hetzner.cloud/reference/cloud#zone-rrsets (list, create, delete) and
https://docs.hetzner.cloud/reference/cloud#zone-rrset-actions (set_records, change_ttl); the official
client hcloud-python (hcloud/zones/client.py) uses the same paths.

* ``Authorization: Bearer <token>``; base ``https://api.hetzner.cloud/v1``.
* ``GET /zones/{zone}/rrsets?page=&per_page=`` -> ``{"rrsets": [...], "meta": {"pagination": {..., "next_page"}}}``;
  an RRset is ``{"id": "www/A", "name": "www", "type": "A", "ttl": 3600 | null, "records": [{"value", "comment"}]}``
  (``name`` relative, ``@`` = apex; ``ttl`` null = the zone's default TTL from ``GET /zones/{zone}``).
* create ``POST /zones/{zone}/rrsets``; replace values ``POST /zones/{zone}/rrsets/{name}/{type}/actions/set_records``;
  TTL ``.../actions/change_ttl``; delete ``DELETE /zones/{zone}/rrsets/{name}/{type}``. Writes return an
  ``action``; a ``running`` action is polled at ``GET /zones/actions/{id}`` until success or error.
* Errors: ``{"error": {"code", "message", "details"}}``; rate limit: 429 ``rate_limit_exceeded`` with
  ``RateLimit-Reset`` (epoch seconds).

There is no multi-RRset write, so an apply costs one call per changed RRset (two when values and TTL change).
"""

from __future__ import annotations

import time
from typing import Iterable
from urllib.parse import quote

from mailstead.dns.plan import Change
from mailstead.dns.providers.base import HttpProvider, ProviderError, absolute, relative
from mailstead.dns.records import Record, value_key


class Hetzner(HttpProvider):
    name = "hetzner"
    per_page = 100
    action_poll_interval = 1.0
    action_timeout = 120.0

    def __init__(self, token: str, api_url: str = "https://api.hetzner.cloud/v1", **kw):
        super().__init__(api_url, {"Authorization": f"Bearer {token}"}, secret=token, **kw)

    def _retry_after(self, resp, attempt):
        reset = resp.headers.get("RateLimit-Reset")
        if reset and "Retry-After" not in resp.headers:
            try:
                wait = min(max(float(reset) - time.time(), 0.0), self.max_wait)
                self.waited += wait
                return wait
            except ValueError:
                pass
        return super()._retry_after(resp, attempt)

    def error_message(self, resp) -> str:
        try:
            err = resp.json().get("error", {})
            return f"{err.get('code')}: {err.get('message')}"
        except (ValueError, AttributeError):
            return resp.text.strip()[:500]

    def _z(self, zone: str) -> str:
        return quote(zone.rstrip("."), safe="")

    def list_records(self, zone: str, wanted: Iterable[tuple[str, str]] | None = None) -> list[Record]:
        raw, page, seen = [], 1, set()
        while page:
            self.count_page(seen, page, zone)
            data = self.request("GET", f"/zones/{self._z(zone)}/rrsets", zone=zone,
                                params={"page": page, "per_page": self.per_page}).json()
            raw += data.get("rrsets", [])
            nxt = ((data.get("meta") or {}).get("pagination") or {}).get("next_page")
            if nxt is not None and (isinstance(nxt, bool) or not isinstance(nxt, int) or nxt <= page):
                # pages only go forward: anything else would re-read pages (or loop forever)
                raise self.fail(zone, [], f"hetzner: next_page {str(nxt)[:20]!r} after page {page}; refusing to loop")
            page = nxt
        default_ttl = None
        if any(rr.get("ttl") is None for rr in raw):
            default_ttl = self.request("GET", f"/zones/{self._z(zone)}", zone=zone).json()["zone"]["ttl"]
        out = []
        for rr in raw:
            if rr["type"] == "SOA" or not rr.get("records"):
                continue
            ttl = rr["ttl"] if rr.get("ttl") is not None else default_ttl
            out.append(Record.make(absolute(rr["name"], zone), rr["type"], ttl, [r["value"] for r in rr["records"]]))
        return out

    def _rr_path(self, zone: str, c: Change) -> str:
        name = relative(c.name, zone) or "@"
        return f"/zones/{self._z(zone)}/rrsets/{quote(name, safe='')}/{c.type}"

    def apply(self, zone: str, changes: list[Change]) -> None:
        for c in changes:
            recs = [{"value": v} for v in c.new]
            if c.action == "add":
                body = {"name": relative(c.name, zone) or "@", "type": c.type, "ttl": c.ttl, "records": recs}
                r = self.request("POST", f"/zones/{self._z(zone)}/rrsets", json=body, zone=zone, records=[c.key])
            elif c.action == "delete":
                r = self.request("DELETE", self._rr_path(zone, c), zone=zone, records=[c.key])
            else:
                r = None
                if {value_key(c.type, v) for v in c.new} != {value_key(c.type, v) for v in c.old}:
                    r = self.request("POST", self._rr_path(zone, c) + "/actions/set_records",
                                     json={"records": recs}, zone=zone, records=[c.key])
                if c.old_ttl != c.ttl:
                    if r is not None:
                        self._wait(r, zone, c)
                    r = self.request("POST", self._rr_path(zone, c) + "/actions/change_ttl",
                                     json={"ttl": c.ttl}, zone=zone, records=[c.key])
            if r is not None:
                self._wait(r, zone, c)

    def _wait(self, resp, zone: str, c: Change) -> None:
        try:
            action = resp.json().get("action")
        except ValueError:
            return
        deadline = time.monotonic() + self.action_timeout
        while action and action.get("status") == "running":
            if time.monotonic() > deadline:
                raise self.fail(zone, [c.key], f"hetzner: action {action.get('id')} still running")
            self._sleep(self.action_poll_interval)
            action = self.request("GET", f"/zones/actions/{action['id']}", zone=zone, records=[c.key]).json()["action"]
        if action and action.get("status") == "error":
            err = action.get("error") or {}
            raise self.fail(zone, [c.key], f"hetzner: action failed: {err.get('code')}: {err.get('message')}")
