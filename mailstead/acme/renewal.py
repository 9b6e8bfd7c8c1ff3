"""Pure renewal logic, shared by the host-side client and the unit tests (cryptography only).

- ``cert_names``: what the one certificate of a mail host covers.
- ``ari_cert_id``: the RFC 9773 certificate identifier, base64url(AKI keyIdentifier) "." base64url(serial).
- ``renewal_reason``: why the certificate at hand must be replaced now (None = keep it): missing, not from
  this CA setup, other names, another key, past ARI's chosen moment, or (no ARI) less than a third of its
  lifetime left.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def cert_names(fqdn: str, domains: Iterable[str]) -> list[str]:
    """The host's name first, then mta-sts.<d> and autoconfig.<d> of every domain; lower case, no duplicates."""
    names = [fqdn]
    for d in domains:
        names += [f"mta-sts.{d}", f"autoconfig.{d}"]
    return list(dict.fromkeys(n.lower().rstrip(".") for n in names))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def ari_cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 section 4.1: the AKI keyIdentifier and the serial's DER INTEGER bytes, base64url, no padding."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = cert.serial_number
    raw = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")
    if raw[0] & 0x80:  # DER INTEGER: positive numbers keep a leading zero byte
        raw = b"\x00" + raw
    return f"{_b64url(aki)}.{_b64url(raw)}"


def parse_time(value: str) -> dt.datetime:
    """An RFC 3339 timestamp (ARI's suggestedWindow) as an aware datetime."""
    v = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in v:  # Python < 3.11 accepts at most 6 fraction digits; Go writes up to 9
        head, _, tail = v.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        v = f"{head}.{digits[:6]}{tail[len(digits):]}"
    t = dt.datetime.fromisoformat(v)
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def ari_window(doc: dict) -> tuple[dt.datetime, dt.datetime]:
    """(start, end) of an ARI renewalInfo response; ValueError when it has none or end is before start."""
    w = doc.get("suggestedWindow") or {}
    start, end = parse_time(w["start"]), parse_time(w["end"])
    if end < start:
        raise ValueError(f"ARI window ends before it starts: {w}")
    return start, end


def not_before(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_before_utc


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def third_left(cert: x509.Certificate) -> dt.datetime:
    """The moment a third of the certificate's lifetime is left (renewal time without ARI)."""
    start, end = not_before(cert), not_after(cert)
    return end - (end - start) / 3


def san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)]


def spki_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def renewal_reason(cert: x509.Certificate | None, names: Iterable[str], key_spki: bytes | None = None,
                   now: dt.datetime | None = None, ari: tuple[dt.datetime, dt.datetime] | None = None,
                   issued_here: bool = True, rng: random.Random | None = None) -> str | None:
    """Why ``cert`` must be replaced now, or None to keep it.

    ``issued_here``: the certificate came from this client with the configured directory (False: a
    placeholder, a private-CA certificate, another CA). ``ari``: the CA's suggested window; renewal happens at
    a uniformly random moment inside it (RFC 9773 section 4.2), now when the window has passed. Without ARI:
    when a third of the lifetime is left."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if cert is None:
        return "no certificate yet"
    if not issued_here:
        return "the current certificate was not issued by this ACME setup"
    want = sorted(n.lower() for n in names)
    if sorted(san_names(cert)) != want:
        return f"the certificate covers {sorted(san_names(cert))}, the host needs {want}"
    if key_spki is not None and spki_der(cert.public_key()) != key_spki:
        return "the certificate is for another key"
    if now >= not_after(cert):
        return "the certificate has expired"
    if ari is not None:
        start, end = ari
        if now >= end:
            return f"ARI: the suggested renewal window ended at {end.isoformat()}"
        if now >= start:
            at = start + (end - start) * (rng or random).random()
            if now >= at:
                return f"ARI: inside the suggested window {start.isoformat()} .. {end.isoformat()}"
        return None
    if now >= third_left(cert):
        return f"a third of its lifetime is left (expires {not_after(cert).isoformat()})"
    return None
