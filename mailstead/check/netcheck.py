"""The mail host's ports as a client sees them (TLS, certificate, DANE), the open relay probe, and what the
spamtraps answer."""

from __future__ import annotations

import datetime as _dt
import hashlib
import smtplib
import socket
import ssl
from typing import Iterable

from mailstead.check import dnscheck
from mailstead.check.findings import Context, Finding, Target, ok, problem, warning

# port -> how TLS starts there
PORTS = {25: "smtp-starttls", 465: "tls", 587: "smtp-starttls", 993: "tls", 4190: "sieve-starttls", 443: "tls"}
PROBE_SENDER = "mailstead-check@example.net"  # RFC 2606: never one of ours (port 25 refuses our own domains)
PROBE_RELAY_RCPT = "relay-probe@example.com"


def _address(t: Target) -> str:
    return str(t.settings.ipv4 or t.settings.ipv6)


def _readline(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf


def served_certificate(ctx: Context, t: Target, port: int) -> tuple[bytes, str]:
    """(DER certificate, TLS version) the host serves on ``port``, the handshake checked against its name."""
    if PORTS[port] == "smtp-starttls":
        return _smtp_starttls_named(ctx, t, port)
    tls = ctx.tls_context()
    raw = socket.create_connection((_address(t), port), timeout=ctx.timeout)
    try:
        if PORTS[port] == "sieve-starttls":
            while True:  # capabilities end with OK
                line = _readline(raw)
                if not line or line.startswith((b"OK", b"NO", b"BYE")):
                    break
            raw.sendall(b"STARTTLS\r\n")
            line = _readline(raw)
            if not line.startswith(b"OK"):
                raise ssl.SSLError(f"STARTTLS refused: {line[:80]!r}")
        with tls.wrap_socket(raw, server_hostname=t.fqdn) as s:
            return s.getpeercert(binary_form=True), s.version()
    finally:
        raw.close()


def _smtp_starttls_named(ctx: Context, t: Target, port: int) -> tuple[bytes, str]:
    """STARTTLS with the certificate checked against the host's name (smtplib would use the address)."""
    tls = ctx.tls_context()
    with smtplib.SMTP(_address(t), port, timeout=ctx.timeout, local_hostname="check.mailstead.invalid") as s:
        s._host = t.fqdn  # the name the certificate must be valid for
        s.ehlo()
        s.starttls(context=tls)
        return s.sock.getpeercert(binary_form=True), s.sock.version()


def spki_sha256(der: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def days_left(der: bytes) -> int:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return (cert.not_valid_after_utc - _dt.datetime.now(_dt.timezone.utc)).days


def tls_ports(ctx: Context, t: Target) -> Iterable[Finding]:
    """Each port answers with TLS and a certificate valid for the host's name, not about to expire; with DANE
    (dnssec) the TLSA record of port 25 matches the key served there."""
    warn_days = t.settings.check.cert_warn_days
    for port in PORTS:
        subject = f"{t.fqdn}:{port}"
        try:
            der, version = served_certificate(ctx, t, port)
        except ssl.SSLCertVerificationError as exc:
            yield problem("tls", subject, f"certificate not valid for {t.fqdn}: {exc.verify_message}",
                          "deploy the host again (tls stage); with ACME check the renewal's log")
            continue
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            yield problem("tls", subject, f"no TLS service: {type(exc).__name__}: {exc}",
                          f"is the daemon on port {port} running? `systemctl --failed` on {t.fqdn}, then deploy again")
            continue
        left = days_left(der)
        if left < 3:
            yield problem("tls", subject, f"certificate expires in {left} day(s)",
                          "renew it now: deploy the host again (tls stage)")
        elif left < warn_days:
            yield warning("tls", subject, f"certificate expires in {left} day(s)",
                          "renewal should have happened by now: deploy the host again and check its log")
        else:
            yield ok("tls", subject, f"{version}, certificate valid for {t.fqdn}, {left} days left")
        if port == 25 and ctx.env.dnssec:
            yield from _tlsa(ctx, t, der)


def _tlsa(ctx: Context, t: Target, der: bytes) -> Iterable[Finding]:
    pins = dnscheck.tlsa_pins(ctx, t.fqdn)
    served = spki_sha256(der)
    subject = f"_25._tcp.{t.fqdn} TLSA"
    fix = f"publish the served key's pin: python -m mailstead dns apply --env {ctx.env.environment}"
    if pins is None:
        yield warning("dane", subject, "the resolver gave no answer", fix)
    elif served not in pins:
        yield problem("dane", subject, f"no '3 1 1' record matches the key served on port 25 ({served[:16]}...): "
                                       "DANE senders will refuse to deliver", fix)
    else:
        yield ok("dane", subject, "matches the key served on port 25")


def _smtp_probe(ctx: Context, t: Target, rcpt: str) -> tuple[str, int, str]:
    """(stage, code, text): where the server answered what: 'connect' (refused: code 0), 'banner', 'mail',
    'rcpt' (code 250 = accepted; the probe then RSETs: no message is ever sent)."""
    try:
        s = smtplib.SMTP(timeout=ctx.timeout, local_hostname="check.mailstead.invalid")
        code, text = s.connect(_address(t), 25)
    except ConnectionRefusedError:
        return "connect", 0, "connection refused"
    except smtplib.SMTPConnectError as exc:
        return "banner", exc.smtp_code, exc.smtp_error.decode(errors="replace")
    except (OSError, smtplib.SMTPException) as exc:
        return "connect", -1, f"{type(exc).__name__}: {exc}"
    try:
        s.ehlo()
        code, text = s.mail(PROBE_SENDER)
        if code >= 300:
            return "mail", code, text.decode(errors="replace")
        code, text = s.rcpt(rcpt)
        s.rset()
        return "rcpt", code, text.decode(errors="replace")
    except smtplib.SMTPServerDisconnected as exc:
        return "rcpt", -1, f"disconnected: {exc}"
    finally:
        try:
            s.quit()
        except Exception:  # noqa: BLE001 - the probe's answer is already known
            s.close()


def open_relay(ctx: Context, t: Target) -> Iterable[Finding]:
    """One probe: on port 25, without AUTH, a foreign sender to a foreign recipient must be refused."""
    stage, code, text = _smtp_probe(ctx, t, PROBE_RELAY_RCPT)
    subject = f"{t.fqdn}:25"
    if stage == "rcpt" and 200 <= code < 300:
        yield problem("relay", subject, f"OPEN RELAY: RCPT TO <{PROBE_RELAY_RCPT}> without AUTH got {code} {text}",
                      "stop smtpd now, then deploy the host again (smtpd.conf relays only authenticated users)")
    elif stage in ("rcpt", "mail") and code >= 500:
        yield ok("relay", subject, f"relaying refused ({code})")
    else:
        yield warning("relay", subject, f"could not probe: {stage} answered {code} {text[:80]}",
                      "port 25 should accept connections: check smtpd on the host")


def trap(ctx: Context, t: Target) -> Iterable[Finding]:
    """What a spamtrap does with mail for one of our addresses: 'first' (MX 10) must refuse it (connection
    refused or 5xx), 'last' (MX 30) must answer 4xx so that real senders retry the real host; a trap that
    accepts mail is a problem; any other answer is a warning."""
    rcpt = f"postmaster@{ctx.env.primary_domain}"
    stage, code, text = _smtp_probe(ctx, t, rcpt)
    pos = t.settings.spamtrap_position
    subject = f"{t.fqdn}:25 ({pos})"
    seen = "refuses connections" if code == 0 else f"answers {code} at {stage}: {text[:80]}"
    if stage == "rcpt" and 200 <= code < 300:
        yield problem("trap", subject, f"the trap ACCEPTS mail ({seen})",
                      "deploy the trap again; a trap must never accept mail")
    elif pos == "first" and (code == 0 or code >= 500):
        yield ok("trap", subject, f"{seen} (trap-first refuses, as it should)")
    elif pos == "last" and 400 <= code < 500:
        yield ok("trap", subject, f"{seen} (trap-last defers, as it should)")
    else:
        yield warning("trap", subject, f"{seen}; expected {'refusal' if pos == 'first' else '4xx'}",
                      "deploy the trap again and check its smtpd")
