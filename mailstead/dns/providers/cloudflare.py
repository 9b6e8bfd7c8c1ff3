"""Cloudflare DNS records API with the batch endpoint.

Documentation: https://developers.cloudflare.com/api/resources/dns/subresources/records/ (list, record
shapes) and https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/batch/
(``POST /zones/{zone_id}/dns_records/batch`` with ``deletes``, ``patches``, ``puts``, ``posts``, executed
in that order in one database transaction), https://developers.cloudflare.com/dns/manage-dns-records/how-to/batch-record-changes/
(limit: 200 records per batch on the Free plan, 3,500 on paid plans).

* ``Authorization: Bearer <token>``; base ``https://api.cloudflare.com/client/v4``.
* Zone id: ``GET /zones?name=<zone>``. Records: ``GET /zones/{id}/dns_records?page=&per_page=`` ->
  ``{"success", "errors", "result": [...], "result_info": {"page", "per_page", "total_pages", ...}}``.
* Cloudflare stores single records, not RRsets: MX has ``content`` (target) + ``priority``; SRV, CAA and
  TLSA carry ``data`` objects; ``ttl`` 1 means "automatic"; names are absolute without the dot.
* Errors: ``{"success": false, "errors": [{"code", "message"}]}``; 429 when rate limited.

An apply is one batch call per zone (chunked at ``batch_limit`` record operations).
"""

from __future__ import annotations

from typing import Iterable

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mailstead.dns.plan import Change
from mailstead.dns.providers.base import HttpProvider, ProviderError
from mailstead.dns.records import Record, canonical, norm_name, txt_value, value_key


class Cloudflare(HttpProvider):
    name = "cloudflare"
    per_page = 100
    batch_limit = 200

    def __init__(self, token: str, api_url: str = "https://api.cloudflare.com/client/v4", **kw):
        super().__init__(api_url, {"Authorization": f"Bearer {token}"}, secret=token, **kw)
        self._zone_ids: dict[str, str] = {}
        self._ids: dict[str, dict[tuple[str, str], dict[str, str]]] = {}  # zone -> (name,type) -> valuekey -> id

    def error_message(self, resp) -> str:
        try:
            errs = resp.json().get("errors") or []
            return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs) or resp.text[:500]
        except (ValueError, AttributeError):
            return resp.text.strip()[:500]

    def _check(self, resp, zone, records=()):
        data = resp.json()
        if not data.get("success", False):
            msg = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in data.get("errors") or [])
            raise self.fail(zone, records, f"cloudflare: {msg or 'request failed'}")
        return data

    def zone_id(self, zone: str) -> str:
        zone = norm_name(zone)
        if zone not in self._zone_ids:
            data = self._check(self.request("GET", "/zones", params={"name": zone}, zone=zone), zone)
            match = [z for z in data.get("result", []) if norm_name(z["name"]) == zone]
            if not match:
                raise self.fail(zone, [], f"cloudflare: no zone named {zone} visible to this token")
            self._zone_ids[zone] = match[0]["id"]
        return self._zone_ids[zone]

    # -- value mapping
    @staticmethod
    def to_value(rec: dict) -> str:
        t, d = rec["type"], rec.get("data") or {}
        if t == "MX":
            return f"{rec.get('priority', 0)} {rec['content'].rstrip('.')}."
        if t == "SRV" and d:
            target = d["target"].rstrip(".") + "." if d["target"] not in (".", "") else "."
            return f"{d['priority']} {d['weight']} {d['port']} {target}"
        if t == "CAA" and d:
            return f'{d["flags"]} {d["tag"]} "{d["value"]}"'
        if t == "TLSA" and d:
            return f"{d['usage']} {d['selector']} {d['matching_type']} {d['certificate']}"
        if t == "TXT":
            c = rec["content"]
            return c if c.startswith('"') else txt_value(c)
        if t in ("CNAME", "NS", "PTR"):
            return rec["content"].rstrip(".") + "."
        return rec["content"]

    @staticmethod
    def to_body(name: str, rtype: str, ttl: int, value: str) -> dict:
        body = {"name": norm_name(name), "type": rtype, "ttl": ttl}
        rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), canonical(rtype, value))
        if rtype == "MX":
            body.update(content=rd.exchange.to_text().rstrip("."), priority=rd.preference)
        elif rtype == "SRV":
            body["data"] = {"priority": rd.priority, "weight": rd.weight, "port": rd.port,
                            "target": rd.target.to_text().rstrip(".") or "."}
        elif rtype == "CAA":
            body["data"] = {"flags": rd.flags, "tag": rd.tag.decode(), "value": rd.value.decode()}
        elif rtype == "TLSA":
            body["data"] = {"usage": rd.usage, "selector": rd.selector, "matching_type": rd.mtype,
                            "certificate": rd.cert.hex()}
        elif rtype in ("CNAME", "NS", "PTR"):
            body["content"] = value.rstrip(".")
        else:
            body["content"] = value
        return body

    # -- read
    def list_records(self, zone: str, wanted: Iterable[tuple[str, str]] | None = None) -> list[Record]:
        zid = self.zone_id(zone)
        raw, page, pages, seen = [], 1, 1, set()
        while page <= pages:
            self.count_page(seen, page, zone)  # page numbers only grow; this bounds the count (max_pages)
            data = self._check(self.request("GET", f"/zones/{zid}/dns_records", zone=zone,
                                            params={"page": page, "per_page": self.per_page}), zone)
            raw += data.get("result", [])
            pages = (data.get("result_info") or {}).get("total_pages", 1) or 1
            if not isinstance(pages, int) or isinstance(pages, bool):
                raise self.fail(zone, [], f"cloudflare: total_pages {str(pages)[:20]!r} is not a number")
            page += 1
        sets: dict[tuple[str, str], list] = {}
        ids: dict[tuple[str, str], dict[str, str]] = {}
        for rec in raw:
            if rec["type"] == "SOA":
                continue
            key = (norm_name(rec["name"]), rec["type"])
            val = self.to_value(rec)
            ttl = 300 if rec.get("ttl") == 1 else rec.get("ttl", 300)  # 1 = automatic (300 s)
            sets.setdefault(key, [ttl, []])[1].append(val)
            ids.setdefault(key, {})[value_key(rec["type"], val)] = rec["id"]
        self._ids[norm_name(zone)] = ids
        return [Record.make(n, t, ttl, vals) for (n, t), (ttl, vals) in sets.items()]

    # -- write
    def apply(self, zone: str, changes: list[Change]) -> None:
        zid = self.zone_id(zone)
        ids = self._ids.get(norm_name(zone))
        if ids is None:
            self.list_records(zone)
            ids = self._ids[norm_name(zone)]
        deletes, patches, posts, touched = [], [], [], []
        for c in changes:
            have = ids.get(c.key, {})
            newk = {value_key(c.type, v): v for v in c.new}
            for k, rid in have.items():
                if k not in newk:
                    deletes.append({"id": rid})
                elif c.old_ttl != c.ttl:
                    patches.append({"id": rid, "ttl": c.ttl})
            for k, v in newk.items():
                if k not in have:
                    posts.append(self.to_body(c.name, c.type, c.ttl, v))
            touched.append(c.key)
        ops = [("deletes", d) for d in deletes] + [("patches", p) for p in patches] + [("posts", p) for p in posts]
        for i in range(0, len(ops), self.batch_limit):
            chunk: dict[str, list] = {}
            for kind, item in ops[i:i + self.batch_limit]:
                chunk.setdefault(kind, []).append(item)
            self._check(self.request("POST", f"/zones/{zid}/dns_records/batch", json=chunk, zone=zone,
                                     records=touched), zone, touched)
        self._ids.pop(norm_name(zone), None)  # ids changed: re-read before the next apply
