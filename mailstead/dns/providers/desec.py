"""deSEC (https://desec.readthedocs.io/en/latest/dns/rrsets.html, .../rate-limits.html).

* ``Authorization: Token <token>``; base ``https://desec.io/api/v1``.
* ``GET /domains/{zone}/rrsets/`` -> a JSON list of ``{"subname", "type", "ttl", "records": [...]}``
  (``subname`` "" = apex; records in presentation format, TXT quoted). More than 500 RRsets: the API
  answers 400 unless the ``cursor`` query parameter is given and pages through ``Link`` headers
  (``rel="first"`` / ``rel="next"``).
* Bulk write: ``PATCH /domains/{zone}/rrsets/`` with a list of RRsets; ``records: []`` deletes one. The
  bulk request is atomic - one call per zone. 400 answers carry one error object per RRset, in order.
* TTL minimum 3600 (the domain's ``minimum_ttl``); lower TTLs are raised to it (``min_ttl``).
* Rate limits are strict (e.g. a few RRset writes per second per domain): 429 with ``Retry-After``
  seconds; we wait and retry (bounded).
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import quote

from mailstead.dns.plan import Change
from mailstead.dns.providers.base import HttpProvider, ProviderError, absolute, relative
from mailstead.dns.records import Record


def _links(header: str | None) -> dict[str, str]:
    out = {}
    for part in (header or "").split(","):
        m = re.match(r'\s*<([^>]*)>\s*;\s*rel="?([a-z]+)"?', part)
        if m:
            out[m.group(2)] = m.group(1)
    return out


class DeSEC(HttpProvider):
    name = "desec"
    min_ttl = 3600

    def __init__(self, token: str, api_url: str = "https://desec.io/api/v1", **kw):
        super().__init__(api_url, {"Authorization": f"Token {token}"}, secret=token, **kw)

    def _path(self, zone: str) -> str:
        return f"/domains/{quote(zone.rstrip('.'), safe='')}/rrsets/"

    def list_records(self, zone: str, wanted: Iterable[tuple[str, str]] | None = None) -> list[Record]:
        resp = self.request("GET", self._path(zone), zone=zone, ok=(200, 400))
        if resp.status_code == 400:
            first = _links(resp.headers.get("Link")).get("first")
            if not first:
                raise self.fail(zone, [], f"desec: HTTP 400: {self.error_message(resp)}")
            # cursor pagination: every link must stay on the API's origin (the token goes with each request),
            # a link seen before is an error (not a loop), and there are at most max_pages pages
            raw, seen = [], set()
            url: str | None = self.next_url(first, resp.url or self.base_url + self._path(zone), zone)
            while url:
                self.count_page(seen, url, zone)
                page = self.request("GET", url, zone=zone)
                raw += page.json()
                nxt = _links(page.headers.get("Link")).get("next")
                url = self.next_url(nxt, url, zone) if nxt else None
        else:
            raw = resp.json()
        return [
            Record.make(absolute(rr["subname"], zone), rr["type"], rr["ttl"], rr["records"])
            for rr in raw
            if rr["type"] not in ("SOA",) and rr.get("records")
        ]

    def apply(self, zone: str, changes: list[Change]) -> None:
        body = [
            {"subname": relative(c.name, zone), "type": c.type, "ttl": max(c.ttl, self.min_ttl), "records": list(c.new)}
            for c in changes
        ]
        resp = self.request("PATCH", self._path(zone), json=body, zone=zone, records=[c.key for c in changes],
                            ok=(200, 400))
        if resp.status_code == 400:
            try:
                errs = resp.json()
            except ValueError:
                errs = resp.text
            if isinstance(errs, list) and len(errs) == len(changes):
                bad = [(c.key, e) for c, e in zip(changes, errs) if e]
                raise self.fail(zone, [k for k, _ in bad],
                                    "desec: HTTP 400: " + "; ".join(f"{k[0]} {k[1]}: {e}" for k, e in bad))
            raise self.fail(zone, [c.key for c in changes], f"desec: HTTP 400: {str(errs)[:500]}")
