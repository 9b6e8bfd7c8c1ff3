"""DNS records as data: everything a mail domain needs, computed from the settings of one environment.

``compute(env, dkim_public, tls_pubkey_hashes)`` returns a sorted list of ``Record`` (one per RRset:
name, type, ttl, values). Names are absolute, lower case, without the trailing dot. Values are in zone
file presentation format, canonicalised with dnspython (absolute target names end with a dot, TXT values
are quoted character-strings, at most 255 bytes each).

``ownership(records, zones)`` says what mailstead owns: most RRsets it produces it owns *fully* (it
replaces whatever is there); a few are *shared* with the zone's owner, and there mailstead owns only its
own values (apex TXT: the value starting with ``v=spf1``; apex CAA: the issuer values it publishes).

The environment object is ``mailstead.settings.EnvironmentSettings``; this module reads it through a few
attribute names of the settings contract (``domains``, ``mail_hosts``, ``spamtraps``, ``dns``, ``dmarc``,
...), so a plain namespace with those attributes works too (the unit tests use the real model when it is
importable).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mailstead.dkim import DkimPublic

DEFAULT_TTL = 3600


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


# ------------------------------------------------------------------------------------ env accessors
def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, Mapping) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    shared = getattr(obj, "shared", None)
    if shared is not None and shared is not obj:
        return _get(shared, *names, default=default)
    return default


@dataclass(frozen=True)
class HostView:
    fqdn: str
    ipv4: str | None
    ipv6: str | None
    position: str | None = None  # spamtraps: 'first' | 'last'


def _host(h: Any) -> HostView:
    ip4 = _get(h, "ipv4")
    ip6 = _get(h, "ipv6")
    return HostView(
        fqdn=norm_name(str(_get(h, "fqdn", "name"))),
        ipv4=str(ip4) if ip4 else None,
        ipv6=str(ipaddress.IPv6Address(str(ip6))) if ip6 else None,
        position=_get(h, "spamtrap_position", "position"),
    )


def mail_hosts(env: Any) -> list[HostView]:
    return [_host(h) for h in (_get(env, "mail_hosts", "mailservers") or [])]


def spamtrap_hosts(env: Any) -> list[HostView]:
    return [_host(h) for h in (_get(env, "spamtraps", "spamtrap_hosts") or [])]


def sending_hosts(env: Any) -> list[HostView]:
    hosts = _get(env, "sending_hosts")
    return [_host(h) for h in hosts] if hosts else mail_hosts(env)


def mx_list(env: Any) -> list[tuple[int, str]]:
    """(preference, fqdn): trap 'first' 10, real mail hosts 20, trap 'last' 30 (per the spamtrap design).

    Taken from the settings model's ``mx`` list when it has one, else derived from the hosts."""
    given = _get(env, "mx")
    if given:
        return sorted({(int(_get(m, "preference")), norm_name(str(_get(m, "host", "fqdn")))) for m in given})
    out: list[tuple[int, str]] = []
    for t in spamtrap_hosts(env):
        out.append((10 if t.position == "first" else 30, t.fqdn))
    for m in mail_hosts(env):
        out.append((20, m.fqdn))
    return sorted(set(out))


def zone_for_domain(env: Any, domain: str) -> str:
    dnsp = _get(env, "dns")
    zone = _get(dnsp, "zone") if dnsp is not None else None
    return norm_name(zone) if zone else norm_name(domain)


def env_ttl(env: Any) -> int:
    return int(_get(env, "dns_ttl", default=DEFAULT_TTL) or DEFAULT_TTL)


# --------------------------------------------------------------------------------------- policies
def mta_sts_policy(env: Any, domain: str) -> str:
    """The MTA-STS policy text (RFC 8461 section 3.2), CRLF line endings, ``mx:`` lines for the real MX."""
    mode = _get(env, "mta_sts_mode", default="enforce") or "enforce"
    max_age = int(_get(env, "mta_sts_max_age", default=604800) or 604800)
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {h.fqdn}" for h in sorted(mail_hosts(env), key=lambda h: h.fqdn)]
    lines.append(f"max_age: {max_age}")
    return "".join(line + "\r\n" for line in lines)


def mta_sts_id(policy: str) -> str:
    """Policy id: changes exactly when the policy text changes (1-32 alphanumerics, RFC 8461 3.1)."""
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


def dmarc_value(env: Any) -> str:
    """DMARC record (RFC 9989): the settings model's ``dmarc_record`` when it has one; otherwise v first,
    then p, then the other tags in the order they were given (rua defaults to the admin address)."""
    rec = _get(env, "dmarc_record")
    if isinstance(rec, str) and rec:
        return rec
    tags: dict[str, str] = dict(_get(env, "dmarc", default=None) or {})
    if not tags:
        tags = {"p": "reject", "np": "reject", "adkim": "s", "aspf": "s"}
    admin = _get(env, "admin_email")
    if "rua" not in tags and admin:
        tags["rua"] = f"mailto:{admin}"
    tags.pop("v", None)
    parts = ["v=DMARC1", f"p={tags.pop('p', 'reject')}"]
    parts += [f"{k}={v}" for k, v in tags.items() if v is not None and v != ""]
    return "; ".join(parts)


def spf_value(env: Any) -> str:
    mech = []
    for h in sorted(sending_hosts(env), key=lambda h: h.fqdn):
        if h.ipv4:
            mech.append(f"ip4:{h.ipv4}")
        if h.ipv6:
            mech.append(f"ip6:{h.ipv6}")
        if not h.ipv4 and not h.ipv6:
            mech.append(f"a:{h.fqdn}")
    return " ".join(["v=spf1", *mech, "-all"])


def is_spf(value: str) -> bool:
    try:
        text = txt_join(value)
    except Exception:
        text = value.strip().strip('"')
    return text.lower().startswith("v=spf1") and (len(text) == 6 or text[6] == " ")


# ---------------------------------------------------------------------------------------- compute
def _dkim_for(dkim_public: Any, domain: str) -> list[DkimPublic]:
    if dkim_public is None:
        return []
    if callable(dkim_public):
        items = dkim_public(domain)
    else:
        items = dkim_public.get(domain, [])
    out = []
    for it in items:
        if isinstance(it, DkimPublic):
            out.append(it)
        elif isinstance(it, Mapping):
            out.append(DkimPublic(it["selector"], it["algorithm"], it["public"]))
        else:  # (selector, algorithm, public) or an object with those attributes
            out.append(DkimPublic(*(it if isinstance(it, tuple) else (it.selector, it.algorithm, it.public))))
    return out


def compute(env: Any, dkim_public: Any = None, tls_pubkey_hashes: Mapping[str, Any] | None = None) -> list[Record]:
    """Every record the environment's mail domains need.

    dkim_public: {domain: [DkimPublic | (selector, algorithm, public) | {...}]} or a callable(domain).
    tls_pubkey_hashes: {mail host fqdn: sha256 hex of its SPKI (or a list, for a key rollover)}; TLSA
    records are produced only when ``env.dnssec`` is true.
    """
    ttl = env_ttl(env)
    recs: dict[tuple[str, str], tuple[int, list[str]]] = {}

    def add(name: str, rtype: str, *values: str, rttl: int | None = None) -> None:
        key = (norm_name(name), rtype)
        cur = recs.setdefault(key, (rttl or ttl, []))
        for v in values:
            if v not in cur[1]:
                cur[1].append(v)

    def address_records(name: str, hosts: Iterable[HostView]) -> None:
        for h in hosts:
            if h.ipv4:
                add(name, "A", h.ipv4)
            if h.ipv6:
                add(name, "AAAA", h.ipv6)

    reals = mail_hosts(env)
    traps = spamtrap_hosts(env)
    for h in reals + traps:
        address_records(h.fqdn, [h])

    caa_issuer = _get(env, "caa_issuer") or _get(_get(env, "tls", default={}), "caa_issuer", default="letsencrypt.org")
    tls_rpt = _get(env, "tls_rpt_email") or _get(env, "admin_email")
    dnssec = bool(_get(env, "dnssec", default=False))
    mxs = mx_list(env)
    primary = sorted(reals, key=lambda h: h.fqdn)

    for domain in [norm_name(d) for d in (_get(env, "domains") or [])]:
        add(domain, "MX", *[f"{pref} {host}." for pref, host in mxs])
        add(domain, "TXT", txt_value(spf_value(env)))
        for k in _dkim_for(dkim_public, domain):
            add(f"{k.selector}._domainkey.{domain}", "TXT", txt_value(k.txt()))
        add(f"_dmarc.{domain}", "TXT", txt_value(dmarc_value(env)))
        policy = mta_sts_policy(env, domain)
        add(f"_mta-sts.{domain}", "TXT", txt_value(f"v=STSv1; id={mta_sts_id(policy)}"))
        address_records(f"mta-sts.{domain}", reals)
        address_records(f"autoconfig.{domain}", reals)
        if tls_rpt:
            add(f"_smtp._tls.{domain}", "TXT", txt_value(f"v=TLSRPTv1; rua=mailto:{tls_rpt}"))
        for i, h in enumerate(primary):
            add(f"_submissions._tcp.{domain}", "SRV", f"{i} 1 465 {h.fqdn}.")
            add(f"_submission._tcp.{domain}", "SRV", f"{i} 1 587 {h.fqdn}.")
            add(f"_imaps._tcp.{domain}", "SRV", f"{i} 1 993 {h.fqdn}.")
        for svc in ("_imap._tcp", "_pop3._tcp", "_pop3s._tcp"):
            add(f"{svc}.{domain}", "SRV", "0 0 0 .")
        if caa_issuer:
            add(domain, "CAA", f'0 issue "{caa_issuer}"')

    if dnssec and tls_pubkey_hashes:
        for h in reals + traps:
            hashes = tls_pubkey_hashes.get(h.fqdn) or tls_pubkey_hashes.get(h.fqdn + ".")
            if not hashes:
                continue
            for hx in [hashes] if isinstance(hashes, str) else list(hashes):
                add(f"_25._tcp.{h.fqdn}", "TLSA", f"3 1 1 {hx.lower()}")

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
