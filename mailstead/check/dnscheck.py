"""DNS as the world sees it, through the deploy machine's resolver: the computed records (DKIM included),
PTR of each host, DNS blocklists, and the MTA-STS policy every domain serves."""

from __future__ import annotations

import http.client
from typing import Any, Iterable

import dns.exception
import dns.resolver
import dns.reversename

from mailstead.check.findings import Context, Finding, Target, ok, problem, warning
from mailstead.dns import desired_records
from mailstead.dns.records import mta_sts_policy, norm_name, ownership, value_key


def lookup(ctx: Context, name: str, rtype: str) -> list[str] | None:
    """Values (presentation format) of name/type; [] when it does not exist; None when the resolver failed."""
    try:
        ans = ctx.resolver.resolve(name, rtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    except (dns.exception.DNSException, OSError):
        return None
    if ans.rrset is None:
        return []
    return [rd.to_text() for rd in ans.rrset]


def apply_hint(env: Any) -> str:
    return (f"publish what mailstead computes: python -m mailstead dns apply --env {env.environment} "
            "(or a deploy; with dns.provider 'none' copy `dns records` into your zone)")


def records(ctx: Context) -> Iterable[Finding]:
    """Each computed RRset equals what the resolver answers (in shared sets - apex TXT, CAA - our values are
    there). Reads the DKIM keys and TLS pins from secrets_dir, writes nothing."""
    env = ctx.env
    recs = desired_records(env, create_keys=False)
    own = ownership(recs)
    bad = 0
    for r in recs:
        live = lookup(ctx, r.name, r.type)
        subject = f"{r.name} {r.type}"
        kind = "dkim" if "._domainkey." in r.name else "dns"
        if live is None:
            bad += 1
            yield warning(kind, subject, "the resolver gave no answer (timeout or SERVFAIL)",
                          "check the resolver of this machine and the zone's name servers, then run check again")
            continue
        want = r.value_keys()
        have = {value_key(r.type, v) for v in live}
        if own.is_shared(r.key):
            missing = want - have
            if missing:
                bad += 1
                yield problem(kind, subject, f"mailstead's value is missing (DNS holds {len(live)} value(s), "
                                             f"not {sorted(missing)[0][:60]!r})", apply_hint(env))
            continue
        if want != have:
            bad += 1
            if not live:
                seen = "not in DNS"
            else:
                seen = f"DNS holds {_short(sorted(have - want) or sorted(have))}, expected {_short(sorted(want))}"
            what = "the DKIM key the host signs with is not what DNS publishes; " if kind == "dkim" else ""
            yield problem(kind, subject, what + seen, apply_hint(env))
    if not bad:
        yield ok("dns", env.environment, f"{len(recs)} record sets match the computed records (DKIM included)")


def _short(values: list[str]) -> str:
    text = ", ".join(values)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def ptr(ctx: Context, t: Target) -> Iterable[Finding]:
    """Every address of the host points back (PTR) to its name, and that name has the address (FCrDNS)."""
    for ip in [a for a in (t.settings.ipv4, t.settings.ipv6) if a]:
        names = lookup(ctx, dns.reversename.from_address(str(ip)).to_text(), "PTR")
        subject = f"{t.fqdn} {ip}"
        fix = f"set the reverse DNS (PTR) of {ip} to {t.fqdn} at your hosting provider"
        if names is None:
            yield warning("ptr", subject, "the resolver gave no answer for the PTR", fix)
        elif not names:
            yield problem("ptr", subject, "no PTR record: many receivers refuse mail from it", fix)
        elif {norm_name(n) for n in names} != {norm_name(t.fqdn)}:
            yield problem("ptr", subject, f"PTR is {', '.join(names)}, not {t.fqdn}", fix)
        else:
            yield ok("ptr", subject, f"PTR {t.fqdn}")


def dnsbl(ctx: Context, t: Target) -> Iterable[Finding]:
    """The host's IPv4 address is on none of the configured DNS blocklists (check.dnsbl_zones)."""
    zones = list(t.settings.check.dnsbl_zones)
    ip = t.settings.ipv4
    if not zones or not ip:
        yield ok("dnsbl", t.fqdn, "no DNS blocklist configured (check.dnsbl_zones)" if not zones
                 else "no IPv4 address to look up")
        return
    rev = ".".join(reversed(str(ip).split(".")))
    clean = []
    for zone in zones:
        answer = lookup(ctx, f"{rev}.{zone}", "A")
        if answer is None:
            yield warning("dnsbl", f"{t.fqdn} {zone}", "the blocklist did not answer",
                          "blocklists often refuse public resolvers: query them from a resolver of your own")
        elif not answer:
            clean.append(zone)
        elif any(a.startswith("127.255.255.") for a in answer):
            yield warning("dnsbl", f"{t.fqdn} {zone}", f"the blocklist refused the query ({answer[0]})",
                          "blocklists often refuse public resolvers: query them from a resolver of your own")
        else:
            yield problem("dnsbl", f"{t.fqdn} {zone}", f"{ip} is listed ({', '.join(answer)})",
                          f"find out why on the list's web site and ask for removal of {ip}")
    if clean:
        yield ok("dnsbl", t.fqdn, f"{ip} is not listed on {', '.join(clean)}")


def tlsa_pins(ctx: Context, fqdn: str) -> list[str] | None:
    """The '3 1 1' hashes of _25._tcp.<fqdn> TLSA, lower case; None when the resolver failed."""
    values = lookup(ctx, f"_25._tcp.{fqdn}", "TLSA")
    if values is None:
        return None
    return [v.split()[3].lower() for v in values if v.split()[:3] == ["3", "1", "1"]]


def _https_get(ctx: Context, host: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPSConnection(host, 443, timeout=ctx.timeout, context=ctx.tls_context())
    try:
        conn.request("GET", path, headers={"User-Agent": "mailstead-check"})
        resp = conn.getresponse()
        return resp.status, resp.read(65536).decode(errors="replace")
    finally:
        conn.close()


def parse_policy(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip().lower(), []).append(v.strip())
    return out


def mta_sts(ctx: Context, domain: str) -> Iterable[Finding]:
    """https://mta-sts.<domain>/.well-known/mta-sts.txt answers over valid TLS and lists exactly the MX hosts
    (the real mail hosts, never a spamtrap), with the mode and max_age of the settings."""
    env = ctx.env
    host = f"mta-sts.{norm_name(domain)}"
    fix = (f"deploy the mail hosts of {env.environment} again (nginx serves the policy) and check that "
           f"{host} resolves to them")
    if env.mta_sts_mode == "none":
        yield ok("mta-sts", domain, "mta_sts_mode is 'none': no policy expected")
        return
    try:
        status, body = _https_get(ctx, host, "/.well-known/mta-sts.txt")
    except Exception as exc:  # noqa: BLE001 - connection, TLS and name errors alike
        yield problem("mta-sts", domain, f"policy not fetchable from https://{host}/: {type(exc).__name__}: {exc}",
                      fix)
        return
    if status != 200:
        yield problem("mta-sts", domain, f"https://{host}/.well-known/mta-sts.txt answered HTTP {status}", fix)
        return
    got = parse_policy(body)
    want = parse_policy(mta_sts_policy(env))
    got_mx = sorted(norm_name(m) for m in got.get("mx", []))
    want_mx = sorted(norm_name(m) for m in want.get("mx", []))
    if got_mx != want_mx:
        yield problem("mta-sts", domain, f"the policy lists mx {', '.join(got_mx) or 'none'}, the MX hosts are "
                                         f"{', '.join(want_mx)}", fix)
    elif got.get("mode") != want.get("mode") or got.get("max_age") != want.get("max_age"):
        yield problem("mta-sts", domain, f"the policy says mode {got.get('mode')} max_age {got.get('max_age')}, "
                                         f"the settings {want.get('mode')} {want.get('max_age')}", fix)
    else:
        yield ok("mta-sts", domain, f"policy served ({want['mode'][0]}), mx: {', '.join(got_mx)}")
