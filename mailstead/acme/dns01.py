"""DNS-01 for the host-side client (``tls.acme_challenge = 'dns-01'``): the ``_acme-challenge`` TXT records
go through mailstead's own DNS provider adapters (``mailstead.dns.providers``: PowerDNS, RFC 2136, Hetzner,
Cloudflare, deSEC), which the deploy copies to the host with the provider's credential
(/etc/mailstead/acme-dns.secret, root only) when this challenge is chosen.

Config (``cfg["dns"]``): the provider's settings as in group_data's ``dns`` (provider, api_url, server_id,
server, port, tsig_key_name, tsig_algorithm, secret_file = the host's credential file) and ``zones``: the
zone of each name.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

CHALLENGE_TTL = 60


def record_name(name: str) -> str:
    return f"_acme-challenge.{name}"


def provider(cfg: dict):
    from mailstead.dns.providers import from_settings

    dns = dict(cfg["dns"])
    zones = dns.pop("zones")
    return from_settings(SimpleNamespace(**dns), "/"), zones


def publish(cfg: dict, values: dict[str, str], log) -> None:
    """Put the TXT value of each name (name -> key authorization digest) in its zone, one apply per zone."""
    _apply(cfg, values, add=True, log=log)


def remove(cfg: dict, values: dict[str, str], log) -> None:
    """Take the challenge values out again (other values of the same RRset are kept)."""
    _apply(cfg, values, add=False, log=log)


def _apply(cfg: dict, values: dict[str, str], add: bool, log) -> None:
    from mailstead.dns.plan import Change

    prov, zones = provider(cfg)
    by_zone: dict[str, dict[str, str]] = {}
    for name, value in values.items():
        by_zone.setdefault(zones[name], {})[record_name(name)] = f'"{value}"'
    for zone, records in by_zone.items():
        held = {r.name: r for r in prov.list_records(zone, [(n, "TXT") for n in records])
                if r.type == "TXT" and r.name in records}
        changes = []
        for rname, value in records.items():
            old = tuple(held[rname].values) if rname in held else ()
            new = tuple(sorted(set(old) | {value})) if add else tuple(v for v in old if v != value)
            if new == old:
                continue
            action = "add" if not old else ("delete" if not new else "change")
            changes.append(Change(action, rname, "TXT", CHALLENGE_TTL, new=new, old=old,
                                  old_ttl=held[rname].ttl if rname in held else None))
        if changes:
            prov.apply(zone, changes)
        log(f"dns-01: {'published' if add else 'removed'} {len(changes)} TXT record(s) in {zone} "
            f"through {prov.name}")


def wait_visible(values: dict[str, str], timeout: float, log) -> None:
    """Best effort: wait until the system resolver sees every value (providers publish with a delay)."""
    try:
        import dns.resolver
    except ImportError:
        return
    deadline = time.monotonic() + timeout
    pending = dict(values)
    while pending and time.monotonic() < deadline:
        for name, value in list(pending.items()):
            try:
                answer = dns.resolver.resolve(record_name(name), "TXT", lifetime=5)
                if any(b"".join(r.strings).decode() == value for r in answer):
                    del pending[name]
            except Exception:  # noqa: BLE001 - NXDOMAIN/timeouts while the record propagates
                pass
        if pending:
            time.sleep(2)
    if pending:
        log(f"dns-01: {', '.join(record_name(n) for n in pending)} not visible after {timeout:.0f}s; asking "
            "the CA anyway")
