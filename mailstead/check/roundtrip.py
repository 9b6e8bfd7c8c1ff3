"""A real round trip through one environment: submit a message on port 587 (STARTTLS, AUTH) as one of its
users to the same user, then find it over IMAP (993) and delete it again. The rollout's gate before
production.

The user and password come from ``<secrets_dir>/rollout/<environment>.json`` on the deploy machine
(``{"address": "...", "password": "..."}``, mode 0600): group_data holds only the password's hash."""

from __future__ import annotations

import imaplib
import json
import smtplib
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Iterable

from mailstead import secrets
from mailstead.check.findings import Context, Finding, Target, ok, problem


def credentials_file(env) -> Path:
    return secrets.secrets_root(env.secrets_dir) / "rollout" / f"{env.environment}.json"


def round_trip(ctx: Context, t: Target, wait: float = 60.0) -> Iterable[Finding]:
    env = ctx.env
    cred_file = credentials_file(env)
    subject = f"{t.fqdn} 587->993"
    if not cred_file.is_file():
        yield problem("round-trip", subject, f"no test user: {cred_file} does not exist",
                      f'write {{"address": "<a user of {env.environment}>", "password": "..."}} there (mode 0600)')
        return
    cred = json.loads(cred_file.read_text())
    address, password = cred["address"], cred["password"]
    token = "mailstead-round-trip-" + uuid.uuid4().hex[:12]
    msg = EmailMessage()
    msg["From"] = msg["To"] = address
    msg["Subject"] = token
    msg.set_content("A round trip made by `python -m mailstead rollout`; it deletes this message again.\n")
    host = str(t.settings.ipv4 or t.settings.ipv6)
    tls = ctx.tls_context()
    started = time.monotonic()
    try:
        with smtplib.SMTP(host, 587, timeout=ctx.timeout, local_hostname="check.mailstead.invalid") as s:
            s._host = t.fqdn  # the certificate must be valid for the host's name
            s.starttls(context=tls)
            s.login(address, password)
            s.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        yield problem("round-trip", subject, f"submission as {address} on port 587 failed: "
                                             f"{type(exc).__name__}: {exc}",
                      f"check smtpd and the user's password hash in group_data/{env.environment}.py")
        return
    try:
        found = _fetch_and_delete(host, t.fqdn, tls, address, password, token, wait)
    except (OSError, imaplib.IMAP4.error) as exc:
        yield problem("round-trip", subject, f"IMAP as {address} on port 993 failed: {type(exc).__name__}: {exc}",
                      "check Dovecot on the host (systemctl status dovecot)")
        return
    if not found:
        yield problem("round-trip", subject, f"the message sent as {address} did not arrive within {wait:.0f} s",
                      f"look at the queue and the log: ssh {t.fqdn} smtpctl show queue; journalctl -u opensmtpd")
    else:
        yield ok("round-trip", subject, f"submitted and read back as {address} in "
                                        f"{time.monotonic() - started:.1f} s")


def _fetch_and_delete(host: str, fqdn: str, tls, address: str, password: str, token: str, wait: float) -> bool:
    m = imaplib.IMAP4_SSL(host, 993, ssl_context=_named(tls, fqdn), timeout=30)
    try:
        m.login(address, password)
        deadline = time.monotonic() + wait
        while True:
            m.select("INBOX")
            typ, data = m.search(None, "HEADER", "Subject", token)
            ids = data[0].split() if data and data[0] else []
            if ids:
                for n in ids:
                    m.store(n, "+FLAGS", "\\Deleted")
                m.expunge()
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(1)
    finally:
        try:
            m.logout()
        except Exception:  # noqa: BLE001 - the answer is known
            pass


def _named(tls, fqdn: str):
    """imaplib checks the certificate against the host it connected to (an address here): check it against
    the name instead."""
    class Named:
        def wrap_socket(self, sock, server_hostname=None, **kw):
            return tls.wrap_socket(sock, server_hostname=fqdn, **kw)

        def __getattr__(self, name):
            return getattr(tls, name)

    return Named()
