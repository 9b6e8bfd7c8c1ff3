"""DNS records as data: everything a mail domain needs, computed from the settings of one environment.

``compute(env, dkim_public, tls_pubkey_hashes)`` returns a sorted list of ``Record`` (one per RRset:
name, type, ttl, values). Names are absolute, lower case, without the trailing dot. Values are in zone
file presentation format, canonicalised with dnspython (absolute target names end with a dot, TXT values
are quoted character-strings, at most 255 bytes each).

``ownership(records, zones)`` says what mailstead owns: most RRsets it produces it owns *fully* (it
replaces whatever is there); a few are *shared* with the zone's owner, and there mailstead owns only its
own values (apex TXT: the value starting with ``v=spf1``; apex CAA: the issuer values it publishes).

Typed against ``mailstead.settings.EnvironmentSettings``: every value comes from that model (the MX list
with the trap preferences, the DMARC record, ...); the policy texts come from ``mailstead.policies``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mailstead import policies
from mailstead.dkim import DkimPublic

if TYPE_CHECKING:  # annotations only: the settings package does not depend on DNS, nor DNS on its import
    from mailstead.settings import EnvironmentSettings

# --------------------------------------------------------------------------------------------- values
def norm_name(name: str) -> str:
    """Absolute name, lower case, no trailing dot ('' and '.' mean the root)."""
    return name.strip().rstrip(".").lower()


def _txt_strings(text: str) -> list[str]:
    """Split one logical TXT value into character-strings of at most 255 bytes (never inside a UTF-8 char)."""
    data = text.encode()
    out, start = [], 0
    while start < len(data) or not out:
        end = min(start + 255, len(data))
        while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
            end -= 1
        out.append(data[start:end].decode())
        start = end
        if start >= len(data):
            break
    return out


def txt_value(text: str) -> str:
    """Presentation form of one TXT record holding ``text`` (split into <=255-byte quoted strings)."""
    parts = []
    for s in _txt_strings(text):
        parts.append('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(parts)


def txt_join(value: str) -> str:
    """The logical text of a TXT value in presentation format (its strings concatenated)."""
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, value)
    return b"".join(rd.strings).decode(errors="replace")


def canonical(rtype: str, value: str) -> str:
    """Canonical presentation text of one value (dnspython's), absolute names with a trailing dot."""
    rdtype = dns.rdatatype.from_text(rtype)
    rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False)
    return rd.to_text(origin=None, relativize=False)


def value_key(rtype: str, value: str) -> str:
    """What two values are compared by: the canonical text; for TXT the joined text (providers re-split)."""
    if rtype.upper() in ("TXT", "SPF"):
        try:
            return txt_join(value)
        except Exception:
            return value
    try:
        return canonical(rtype, value).lower() if rtype.upper() in ("MX", "SRV", "CNAME", "NS", "PTR") else canonical(rtype, value)
    except Exception:
        return value.strip()


@dataclass(frozen=True, order=True)
class Record:
    """One RRset: absolute name (no trailing dot), type, TTL and its values (presentation format)."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]

    @classmethod
    def make(cls, name: str, rtype: str, ttl: int, values: Iterable[str]) -> "Record":
        rtype = rtype.upper()
        canon = {}
        for v in values:
            try:
                c = canonical(rtype, v)
            except Exception as exc:  # a bug in compute(), not a user error: say which record
                raise ValueError(f"{name} {rtype}: bad value {v!r}: {exc}") from exc
            canon.setdefault(value_key(rtype, c), c)
        return cls(norm_name(name), rtype, int(ttl), tuple(sorted(canon.values())))

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)

    def value_keys(self) -> frozenset[str]:
        return frozenset(value_key(self.type, v) for v in self.values)

    def lines(self) -> list[str]:
        return [f"{self.name}. {self.ttl} IN {self.type} {v}" for v in self.values]


# ------------------------------------------------------------------------------------ the environment
def _v4(h: Any) -> str | None:
    return str(h.ipv4) if h.ipv4 else None


def _v6(h: Any) -> str | None:
    return str(ipaddress.IPv6Address(str(h.ipv6))) if h.ipv6 else None


def zone_for_domain(env: EnvironmentSettings, domain: str) -> str:
    return norm_name(env.dns.zone) if env.dns.zone else norm_name(domain)


def mta_sts_policy(env: EnvironmentSettings) -> str:
    """The environment's MTA-STS policy (the same for each of its domains): the real MX hosts only."""
    return policies.mta_sts_policy(env.mta_sts_mode, env.mta_sts_max_age, env.mail_hosts)


def is_spf(value: str) -> bool:
    try:
        text = txt_join(value)
    except Exception:
        text = value.strip().strip('"')
    return text.lower().startswith("v=spf1") and (len(text) == 6 or text[6] == " ")


# ---------------------------------------------------------------------------------------- compute
def compute(env: EnvironmentSettings, dkim_public: Mapping[str, list[DkimPublic]] | None = None,
            tls_pubkey_hashes: Mapping[str, str | list[str]] | None = None) -> list[Record]:
    """Every record the environment's mail domains need.

    dkim_public: {domain: [DkimPublic, ...]} (the selectors to publish).
    tls_pubkey_hashes: {mail host fqdn: sha256 hex of its SPKI (or a list, for a key rollover)}; TLSA
    records are produced only when ``env.dnssec`` is true.
    """
    ttl = env.dns_ttl
    recs: dict[tuple[str, str], tuple[int, list[str]]] = {}

    def add(name: str, rtype: str, *values: str, rttl: int | None = None) -> None:
        key = (norm_name(name), rtype)
        cur = recs.setdefault(key, (rttl or ttl, []))
        for v in values:
            if v not in cur[1]:
                cur[1].append(v)

    def address_records(name: str, hosts: Iterable[Any]) -> None:
        for h in hosts:
            if h.ipv4:
                add(name, "A", _v4(h))
            if h.ipv6:
                add(name, "AAAA", _v6(h))

    reals, traps = list(env.mail_hosts), list(env.spamtraps)
    for h in reals + traps:
        address_records(h.fqdn, [h])

    spf = txt_value(policies.spf_record(env.sending_hosts))
    dmarc = txt_value(env.dmarc_record)
    sts_id = txt_value(f"v=STSv1; id={policies.mta_sts_id(mta_sts_policy(env))}")
    primary = sorted(reals, key=lambda h: h.fqdn)

    for domain in [norm_name(d) for d in env.domains]:
        add(domain, "MX", *[f"{m.preference} {norm_name(m.host)}." for m in env.mx])
        add(domain, "TXT", spf)
        for k in (dkim_public or {}).get(domain, []):
            add(f"{k.selector}._domainkey.{domain}", "TXT", txt_value(k.txt()))
        add(f"_dmarc.{domain}", "TXT", dmarc)
        add(f"_mta-sts.{domain}", "TXT", sts_id)
        address_records(f"mta-sts.{domain}", reals)
        address_records(f"autoconfig.{domain}", reals)
        add(f"_smtp._tls.{domain}", "TXT", txt_value(f"v=TLSRPTv1; rua=mailto:{env.tls_rpt_email}"))
        for i, h in enumerate(primary):
            add(f"_submissions._tcp.{domain}", "SRV", f"{i} 1 465 {h.fqdn}.")
            add(f"_submission._tcp.{domain}", "SRV", f"{i} 1 587 {h.fqdn}.")
            add(f"_imaps._tcp.{domain}", "SRV", f"{i} 1 993 {h.fqdn}.")
        for svc in ("_imap._tcp", "_pop3._tcp", "_pop3s._tcp"):
            add(f"{svc}.{domain}", "SRV", "0 0 0 .")
        add(domain, "CAA", f'0 issue "{env.caa_issuer}"')

    # DMARC reports of every domain go to the report address(es): a report domain of ours authorizes the
    # environment's other domains to send it their reports (RFC 7489 7.1), else receivers drop those reports
    ours = [norm_name(d) for d in env.domains]
    for report_domain in policies.dmarc_report_domains(env.dmarc):
        if report_domain in ours:
            for domain in ours:
                if domain != report_domain:
                    add(f"{domain}._report._dmarc.{report_domain}", "TXT", txt_value("v=DMARC1"))

    if env.dnssec and tls_pubkey_hashes:
        for h in reals + traps:
            hashes = tls_pubkey_hashes.get(norm_name(h.fqdn))
            if not hashes:
                continue
            for hx in [hashes] if isinstance(hashes, str) else list(hashes):
                add(f"_25._tcp.{norm_name(h.fqdn)}", "TLSA", f"3 1 1 {hx.lower()}")

    return sorted(Record.make(n, t, rttl, vals) for (n, t), (rttl, vals) in recs.items() if vals)


# -------------------------------------------------------------------------------------- ownership
@dataclass
class Ownership:
    """Which RRsets mailstead owns fully, and in which shared RRsets it owns only some values.

    ``shared[(name, type)]`` is a predicate over one value (presentation format): True = that value is
    mailstead's. Foreign values in shared sets, and RRsets at (name, type) not listed, are never touched.
    """

    full: set[tuple[str, str]] = field(default_factory=set)
    shared: dict[tuple[str, str], Callable[[str], bool]] = field(default_factory=dict)

    def owns_value(self, key: tuple[str, str], value: str) -> bool:
        if key in self.full:
            return True
        pred = self.shared.get(key)
        return bool(pred and pred(value))

    def is_shared(self, key: tuple[str, str]) -> bool:
        return key in self.shared


def ownership(records: Iterable[Record], published_caa: Iterable[str] = ()) -> Ownership:
    """Ownership for a set of computed records.

    Apex-style shared sets: any TXT RRset holding an SPF value (only the ``v=spf1`` value is ours) and
    any CAA RRset (only the issuer values mailstead produces, or published earlier per ``published_caa``).
    Everything else mailstead computes it owns fully.
    """
    own = Ownership()
    for r in records:
        if r.type == "TXT" and any(is_spf(v) for v in r.values):
            own.shared[r.key] = is_spf
        elif r.type == "CAA":
            mine = {value_key("CAA", v) for v in r.values} | {value_key("CAA", v) for v in published_caa}
            own.shared[r.key] = lambda v, mine=frozenset(mine): value_key("CAA", v) in mine
        else:
            own.full.add(r.key)
    return own
