"""One ACME run on the mail host: renew when due, install atomically, reload the daemons.

Configuration (/etc/mailstead/acme.json, written by tasks/certificates.py)::

  {"directory": URL, "ca_bundle": path|null, "contact": email, "profile": str|null,
   "challenge": "http-01", "webroot": dir, "names": [...],
   "account_key": path, "cert_key": path, "cert": path, "state": path,
   "reload": [[argv], ...], "wait_dns": seconds, "renew_now": path}

``renew_now``: while this file exists, a run renews whatever the renewal decision says, and removes it once
the new certificate is installed (``touch`` it, then ``systemctl start mailstead-acme``).

The account key and the certificate key are host identity kept on the deploy machine (secrets_dir) and
installed by the deploy: the account is found again by its key (an ACME newAccount with a known key returns
the existing account, RFC 8555 7.3.1), so a rebuilt host never registers twice, and the certificate key
stays the same across renewals (a TLSA 3 1 1 record pins it). Only the chain file is replaced: written
next to the live one and renamed over it, after checking that it matches the key and names.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import josepy as jose
from acme import client as acme_client
from acme import crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailstead.acme import dns01, renewal

USER_AGENT = "mailstead-acme"


class AcmeFailure(Exception):
    """A run that could not get a certificate; the message says why (it goes to the journal)."""


def log(msg: str) -> None:
    print(f"mailstead-acme: {msg}", flush=True)


def load_config(path: str) -> dict:
    with open(path) as f:
        cfg = json.load(f)
    cfg.setdefault("challenge", "http-01")
    cfg.setdefault("reload", [])
    cfg.setdefault("wait_dns", 120)
    return cfg


def read_state(cfg: dict) -> dict:
    try:
        with open(cfg["state"]) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(path)}.", suffix=".new")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def current_cert(cfg: dict) -> x509.Certificate | None:
    try:
        with open(cfg["cert"], "rb") as f:
            return x509.load_pem_x509_certificate(f.read())
    except (FileNotFoundError, ValueError):
        return None


def key_spki(cfg: dict) -> bytes:
    with open(cfg["cert_key"], "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    return renewal.spki_der(key.public_key())


def _ssl_context(cfg: dict) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cfg.get("ca_bundle") or None)


def fetch_directory(cfg: dict) -> dict:
    req = urllib.request.Request(cfg["directory"], headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, context=_ssl_context(cfg), timeout=30) as r:
        return json.load(r)


def ari_window(cfg: dict, directory: dict, cert: x509.Certificate):
    """ARI's suggested window for ``cert`` (one unauthenticated GET, RFC 9773), or None when the CA offers no
    ARI or does not answer it (then the one-third rule applies)."""
    base = directory.get("renewalInfo")
    if not base:
        return None
    url = base.rstrip("/") + "/" + renewal.ari_cert_id(cert)
    try:
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(req, context=_ssl_context(cfg), timeout=30) as r:
            return renewal.ari_window(json.load(r))
    except (OSError, ValueError, KeyError) as e:
        log(f"ARI ({url}) gave no window ({e}); using the one-third rule")
        return None


def due(cfg: dict, now: dt.datetime | None = None) -> str | None:
    """Why a certificate must be (re)issued now, or None. Contacts the CA for ARI only."""
    cert = current_cert(cfg)
    state = read_state(cfg)
    issued_here = (cert is not None and state.get("directory") == cfg["directory"]
                   and state.get("serial") == format(cert.serial_number, "x"))
    reason = renewal.renewal_reason(cert, cfg["names"], key_spki(cfg), now=now, issued_here=issued_here)
    if reason or cert is None:
        return reason
    window = None
    try:
        window = ari_window(cfg, fetch_directory(cfg), cert)
    except (OSError, ValueError) as e:
        log(f"the ACME directory {cfg['directory']} did not answer ({e}); using the one-third rule")
    return renewal.renewal_reason(cert, cfg["names"], now=now, ari=window)


def wait_for_names(names, timeout: float) -> None:
    """The challenge needs every name in DNS (the deploy's DNS stage has just published them)."""
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            try:
                socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
                break
            except socket.gaierror as e:
                if time.monotonic() > deadline:
                    raise AcmeFailure(f"{name} does not resolve ({e}) after {timeout:.0f}s: the CA could not "
                                      "validate it; publish the host's DNS records first") from None
                time.sleep(1)


def issue(cfg: dict) -> tuple[bytes, str]:
    """Order, validate and download a certificate for cfg['names'] with the certificate key: the full chain
    and the account's URL."""
    with open(cfg["account_key"], "rb") as f:
        account_key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(account_key, rsa.RSAPrivateKey):
        raise AcmeFailure("the account key must be an RSA key")
    jwk = jose.JWKRSA(key=account_key)
    net = acme_client.ClientNetwork(jwk, user_agent=USER_AGENT, verify_ssl=cfg.get("ca_bundle") or True)
    directory = acme_client.ClientV2.get_directory(cfg["directory"], net)
    acme = acme_client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(email=cfg["contact"], terms_of_service_agreed=True)
    try:
        account = acme.new_account(registration)
        log(f"registered a new ACME account {account.uri}")
    except errors.ConflictError as e:  # the key already has an account: use it
        account = acme.query_registration(messages.RegistrationResource(uri=e.location,
                                                                        body=messages.Registration()))
        log(f"using the existing ACME account {account.uri}")
    net.account = account

    with open(cfg["cert_key"], "rb") as f:
        csr = crypto_util.make_csr(f.read(), cfg["names"])
    order = new_order(acme, csr, cfg.get("profile"))
    challenge = cfg.get("challenge", "http-01")
    webroot = os.path.join(cfg["webroot"], ".well-known", "acme-challenge")
    written, published = [], {}
    try:
        answers = []
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue
            name = authz.body.identifier.value
            challb = next((c for c in authz.body.challenges if c.chall.typ == challenge), None)
            if challb is None:
                raise AcmeFailure(f"the CA offers no {challenge} challenge for {name}")
            response, validation = challb.response_and_validation(jwk)
            if challenge == "http-01":
                os.makedirs(webroot, mode=0o755, exist_ok=True)
                path = os.path.join(webroot, challb.chall.encode("token"))
                write_atomic(path, validation.encode(), 0o644)
                written.append(path)
            else:
                published[name] = validation
            answers.append((challb, response))
        if published:
            dns01.publish(cfg, published, log)
            dns01.wait_visible(published, cfg.get("dns_wait", 120), log)
        for challb, response in answers:
            acme.answer_challenge(challb, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=cfg.get("timeout", 180))
        try:
            order = acme.poll_and_finalize(order, deadline)
        except errors.ValidationError as e:
            problems = [f"{a.body.identifier.value}: {c.error}" for a in e.failed_authzrs
                        for c in a.body.challenges if c.error]
            raise AcmeFailure("the CA could not validate " + "; ".join(problems)) from None
    finally:
        for path in written:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if published:
            try:
                dns01.remove(cfg, published, log)
            except Exception as e:  # noqa: BLE001 - a leftover TXT record is harmless; say so
                log(f"dns-01: could not remove the challenge records ({type(e).__name__}: {e})")
    return order.fullchain_pem.encode(), account.uri


def new_order(acme, csr_pem: bytes, profile: str | None):
    """A new order for the CSR's names, with the ACME profile when one is set (acme >= 4.0 sends it)."""
    return acme.new_order(csr_pem, profile=profile) if profile else acme.new_order(csr_pem)


def check_chain(cfg: dict, chain: bytes) -> x509.Certificate:
    """The new chain's leaf: for our key and exactly our names, else AcmeFailure (nothing is installed)."""
    leaf = x509.load_pem_x509_certificate(chain)
    if renewal.spki_der(leaf.public_key()) != key_spki(cfg):
        raise AcmeFailure("the CA returned a certificate for another key; not installed")
    if sorted(renewal.san_names(leaf)) != sorted(n.lower() for n in cfg["names"]):
        raise AcmeFailure(f"the CA returned a certificate for {renewal.san_names(leaf)}; not installed")
    return leaf


def reload_daemons(cfg: dict) -> list[str]:
    failed = []
    for argv in cfg["reload"]:
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode != 0:
            failed.append(f"{' '.join(argv)}: {p.stderr.strip() or p.returncode}")
    return failed


def run(cfg: dict, force: bool = False) -> bool:
    """Renew when due (or ``force``); True when a new certificate was installed. Raises AcmeFailure."""
    old = current_cert(cfg)
    renew_now = cfg.get("renew_now")  # a file: "renew at the next run" (the timer's service, or by hand)
    if renew_now and os.path.exists(renew_now):
        force, why = True, f"forced ({renew_now} exists)"
    else:
        why = "forced (--force)"
    reason = why if force else due(cfg)
    if not reason:
        log(f"certificate for {', '.join(cfg['names'])} (serial {old.serial_number:x}) is not due for renewal; "
            f"expires {renewal.not_after(old).isoformat()}")
        return False
    log(f"requesting a certificate for {', '.join(cfg['names'])} from {cfg['directory']}: {reason}")
    if cfg.get("challenge", "http-01") == "http-01":
        wait_for_names(cfg["names"], cfg["wait_dns"])
    try:
        chain, account = issue(cfg)
    except AcmeFailure:
        raise
    except Exception as e:  # noqa: BLE001 - network, protocol, CA errors: one clear line, old cert stays
        raise AcmeFailure(f"{type(e).__name__}: {e}") from None
    leaf = check_chain(cfg, chain)
    write_atomic(cfg["cert"], chain, 0o644)
    state = {"directory": cfg["directory"], "account": account, "serial": format(leaf.serial_number, "x"),
             "names": cfg["names"], "not_after": renewal.not_after(leaf).isoformat(),
             "issued_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    write_atomic(cfg["state"], json.dumps(state, indent=1).encode(), 0o600)
    log(f"installed certificate serial {leaf.serial_number:x} for {', '.join(cfg['names'])}, "
        f"valid until {renewal.not_after(leaf).isoformat()}")
    if renew_now and os.path.exists(renew_now):
        os.unlink(renew_now)
    failed = reload_daemons(cfg)
    if failed:
        raise AcmeFailure("the new certificate is installed but reloading failed: " + "; ".join(failed))
    return True


def main_run(config: str, force: bool) -> int:
    try:
        cfg = load_config(config)
        run(cfg, force=force)
        return 0
    except AcmeFailure as e:
        old = None
        try:
            old = current_cert(load_config(config))
        except (OSError, ValueError):
            pass
        keep = (f"the current certificate (serial {old.serial_number:x}, expires "
                f"{renewal.not_after(old).isoformat()}) keeps serving" if old else "no certificate is installed")
        print(f"mailstead-acme: FAILED: {e}; {keep}", file=sys.stderr, flush=True)
        return 1
