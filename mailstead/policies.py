"""The policy texts a mail domain publishes, in one place: its DMARC record, its SPF record, its MTA-STS policy
and that policy's id. The DNS records carry them and nginx serves the MTA-STS policy; both take them from here.
Standard library only, so the settings model can use it too."""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping, Protocol

# DMARC tags (RFC 9989) in the order they are written
DMARC_TAGS = ("p", "sp", "np", "adkim", "aspf", "rua", "ruf", "fo", "psd", "t")


class Host(Protocol):
    fqdn: str
    ipv4: object | None
    ipv6: object | None


def dmarc_record(tags: Mapping[str, str]) -> str:
    """The TXT value of _dmarc.<domain>: v=DMARC1 first, then the tags in RFC order."""
    return "; ".join(["v=DMARC1"] + [f"{t}={tags[t]}" for t in DMARC_TAGS if t in tags])


def dmarc_report_domains(tags: Mapping[str, str]) -> list[str]:
    """The domains of the DMARC record's report addresses (the `mailto:` URIs of rua and ruf), lower case.
    A report address outside the domain a DMARC record is for counts only when the address's domain
    publishes ``<domain>._report._dmarc.<its domain> TXT "v=DMARC1"`` (RFC 7489 section 7.1)."""
    out: list[str] = []
    for tag in ("rua", "ruf"):
        for uri in (tags.get(tag) or "").split(","):
            uri = uri.strip()
            if uri[:7].lower() == "mailto:" and "@" in uri:
                domain = uri[7:].rsplit("@", 1)[1].split("!", 1)[0].strip().lower().rstrip(".")
                if domain and domain not in out:
                    out.append(domain)
    return out


def spf_record(sending_hosts: Iterable[Host]) -> str:
    """`v=spf1` listing exactly the hosts that send the domain's mail (their addresses, else their name)."""
    mech = []
    for h in sorted(sending_hosts, key=lambda h: h.fqdn):
        if h.ipv4:
            mech.append(f"ip4:{h.ipv4}")
        if h.ipv6:
            mech.append(f"ip6:{h.ipv6}")
        if not h.ipv4 and not h.ipv6:
            mech.append(f"a:{h.fqdn}")
    return " ".join(["v=spf1", *mech, "-all"])


def mta_sts_policy(mode: str, max_age: int, mail_hosts: Iterable[Host]) -> str:
    """The MTA-STS policy text (RFC 8461 section 3.2), CRLF line endings, one `mx:` line per real MX."""
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {h.fqdn}" for h in sorted(mail_hosts, key=lambda h: h.fqdn)]
    lines.append(f"max_age: {max_age}")
    return "".join(line + "\r\n" for line in lines)


def mta_sts_id(policy: str) -> str:
    """Policy id: changes exactly when the policy text changes (1-32 alphanumerics, RFC 8461 3.1)."""
    return hashlib.sha256(policy.encode()).hexdigest()[:20]
