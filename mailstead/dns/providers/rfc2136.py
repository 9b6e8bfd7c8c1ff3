"""RFC 2136 dynamic updates signed with TSIG (RFC 8945), via dnspython.

Write: one UPDATE message per zone over TCP; each changed RRset is deleted and re-added with its new
values and TTL inside that one message (the server applies an UPDATE atomically).

Read: a TSIG-signed AXFR when the server allows it (``read='axfr'``); otherwise - and by default
``read='auto'`` falls back to it when the transfer is refused - one TCP query per RRset the plan needs
(the desired ones and those in the state file), sent straight to the primary server, so no resolver
cache is involved. PowerDNS allows AXFR only to ``allow-axfr-ips`` (default: loopback), so ``auto``
works out of the box against a PowerDNS primary that only opened ``ALLOW-DNSUPDATE-FROM``.
"""

from __future__ import annotations

import base64
from typing import Iterable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.zone

from mailstead.dns.plan import Change
from mailstead.dns.providers.base import Provider, ProviderError, guard_address
from mailstead.dns.records import Record, norm_name


class RFC2136(Provider):
    name = "rfc2136"

    def __init__(self, server: str, key_name: str, secret: str, algorithm: str = "hmac-sha256",
                 port: int = 53, timeout: float = 10.0, read: str = "auto"):
        super().__init__()
        guard_address(server)
        self.server, self.port, self.timeout, self.read = server, int(port), timeout, read
        try:  # fail early on a malformed secret (never echo it)
            ok = bool(secret) and bool(base64.b64decode(secret, validate=True))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ProviderError("", [], f"rfc2136: the TSIG secret for key {key_name} is not base64 "
                                        "(value not shown); check dns.secret_file / dns.secret_env")
        self.keyname = dns.name.from_text(key_name)
        self.keyring = dns.tsigkeyring.from_text({key_name: secret})
        self.algorithm = dns.name.from_text(algorithm)

    # -- read
    def list_records(self, zone: str, wanted: Iterable[tuple[str, str]] | None = None) -> list[Record]:
        if self.read in ("auto", "axfr"):
            try:
                return self._axfr(zone)
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                if self.read == "axfr" or wanted is None:
                    raise ProviderError(zone, [], f"rfc2136: AXFR of {zone} from {self.server}: {exc}") from None
        if wanted is None:
            raise ProviderError(zone, [], "rfc2136: reading by query needs the list of wanted RRsets")
        return self._query(zone, wanted)

    def _axfr(self, zone: str) -> list[Record]:
        self.calls["read"] += 1
        z = dns.zone.from_xfr(
            dns.query.xfr(self.server, norm_name(zone) + ".", port=self.port, timeout=self.timeout,
                          lifetime=self.timeout * 3, keyring=self.keyring, keyname=self.keyname,
                          keyalgorithm=self.algorithm),
            relativize=False,
        )
        out = []
        for name, rdataset in z.iterate_rdatasets():
            rtype = dns.rdatatype.to_text(rdataset.rdtype)
            if rtype in ("SOA", "RRSIG", "NSEC", "NSEC3", "DNSKEY", "NSEC3PARAM"):
                continue
            out.append(Record.make(name.to_text(), rtype, rdataset.ttl, [rd.to_text() for rd in rdataset]))
        return out

    def _query(self, zone: str, wanted: Iterable[tuple[str, str]]) -> list[Record]:
        out = []
        for name, rtype in sorted(set(wanted)):
            q = dns.message.make_query(norm_name(name) + ".", rtype, want_dnssec=False)
            q.flags &= ~dns.flags.RD
            self.calls["read"] += 1
            try:
                resp = dns.query.tcp(q, self.server, port=self.port, timeout=self.timeout)
            except (dns.exception.DNSException, OSError) as exc:
                raise ProviderError(zone, [(name, rtype)], f"rfc2136: query {name} {rtype}: {exc}") from None
            rc = resp.rcode()
            if rc not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                raise ProviderError(zone, [(name, rtype)], f"rfc2136: query {name} {rtype}: {dns.rcode.to_text(rc)}")
            for rrset in resp.answer:
                if dns.rdatatype.to_text(rrset.rdtype) == rtype and norm_name(rrset.name.to_text()) == norm_name(name):
                    out.append(Record.make(name, rtype, rrset.ttl, [rd.to_text() for rd in rrset]))
        return out

    # -- write
    def apply(self, zone: str, changes: list[Change]) -> None:
        origin = dns.name.from_text(norm_name(zone) + ".")
        upd = dns.update.UpdateMessage(origin, keyring=self.keyring, keyname=self.keyname,
                                       keyalgorithm=self.algorithm)
        for c in changes:
            name = dns.name.from_text(norm_name(c.name) + ".")
            upd.delete(name, c.type)
            if c.new:
                upd.add(name, c.ttl, c.type, *c.new)
        self.calls["write"] += 1
        try:
            resp = dns.query.tcp(upd, self.server, port=self.port, timeout=self.timeout)
        except (dns.exception.DNSException, OSError) as exc:
            raise ProviderError(zone, [c.key for c in changes], f"rfc2136: update to {self.server}: {exc}") from None
        rc = resp.rcode()
        if rc != dns.rcode.NOERROR:
            raise ProviderError(zone, [c.key for c in changes],
                                f"rfc2136: server {self.server} answered {dns.rcode.to_text(rc)}")
