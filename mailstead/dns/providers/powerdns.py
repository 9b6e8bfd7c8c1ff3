"""PowerDNS Authoritative HTTP API (https://doc.powerdns.com/authoritative/http-api/zone.html).

Read: ``GET /api/v1/servers/<server>/zones/<zone.>`` (the zone with all its RRsets).
Write: one ``PATCH`` of the same URL per zone with every changed RRset (``changetype`` REPLACE or
DELETE); PowerDNS applies a PATCH in one transaction. Header ``X-API-Key``. Names are absolute with the
trailing dot; TXT content carries its quotes.
"""

from __future__ import annotations

from typing import Iterable
from urllib.parse import quote

from mailstead.dns.plan import Change
from mailstead.dns.providers.base import HttpProvider, ProviderError
from mailstead.dns.records import Record, norm_name


class PowerDNS(HttpProvider):
    name = "powerdns"

    def __init__(self, api_url: str, api_key: str, server_id: str = "localhost", **kw):
        api_url = (api_url or "").rstrip("/")
        if not api_url.endswith("/api/v1"):
            api_url += "/api/v1"
        super().__init__(api_url, {"X-API-Key": api_key}, secret=api_key, **kw)
        self.server_id = server_id

    def _zone_path(self, zone: str) -> str:
        return f"/servers/{self.server_id}/zones/{quote(norm_name(zone) + '.')}"

    def list_records(self, zone: str, wanted: Iterable[tuple[str, str]] | None = None) -> list[Record]:
        data = self.request("GET", self._zone_path(zone), zone=zone).json()
        out = []
        for rr in data.get("rrsets", []):
            if rr["type"] == "SOA":
                continue
            values = [r["content"] for r in rr.get("records", []) if not r.get("disabled")]
            if values:
                out.append(Record.make(rr["name"], rr["type"], rr.get("ttl", 3600), values))
        return out

    def apply(self, zone: str, changes: list[Change]) -> None:
        rrsets = []
        for c in changes:
            item = {"name": norm_name(c.name) + ".", "type": c.type}
            if c.new:
                item.update(changetype="REPLACE", ttl=c.ttl,
                            records=[{"content": v, "disabled": False} for v in c.new])
            else:
                item["changetype"] = "DELETE"
            rrsets.append(item)
        self.request("PATCH", self._zone_path(zone), json={"rrsets": rrsets}, zone=zone,
                     records=[c.key for c in changes])

    def create_zone(self, zone: str, nameservers: list[str] | None = None, soa_edit_api: str = "DEFAULT") -> None:
        """Make a native zone (lab and bench helper)."""
        body = {"name": norm_name(zone) + ".", "kind": "Native", "nameservers": nameservers or [],
                "soa_edit_api": soa_edit_api}
        self.request("POST", f"/servers/{self.server_id}/zones", json=body, zone=zone)

    def delete_zone(self, zone: str) -> None:
        self.request("DELETE", self._zone_path(zone), zone=zone, ok=(204, 404))

    def error_message(self, resp) -> str:
        try:
            return str(resp.json().get("error", resp.text))[:500]
        except ValueError:
            return resp.text.strip()[:500]


__all__ = ["PowerDNS", "ProviderError"]
