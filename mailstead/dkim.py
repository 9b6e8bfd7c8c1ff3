"""DKIM keys: made once on the deploy machine, kept in the secrets directory, reused by every deploy.

Layout (``<secrets_dir>/dkim/<domain>/``, see mailstead/secrets.py; directories 0700, files 0600):

  index.json            {"selectors": [{"selector", "algorithm", "bits", "state", "created", "file"}, ...]}
  r20261126.key         RSA private key, PKCS#8 PEM (rspamd loads PEM through OpenSSL)
  e20261126.key         Ed25519 private key in the format ``rspamadm dkim_keygen -t ed25519`` writes:
                        base64 of the 64-byte libsodium secret key (32-byte seed || 32-byte public key),
                        one line, no newline. rspamd's ``rspamd_dkim_sign_key_load`` base64-decodes a key
                        file that is valid base64 and treats 32 or 64 raw bytes as an Ed25519 key; PKCS#8
                        PEM Ed25519 keys are only understood by newer rspamd releases (EVP path), so we do
                        not depend on it. Verified in the lab with Debian 13's rspamd 3.12.1: it signs with
                        both files (a=rsa-sha256 and a=ed25519-sha256) and verifies both signatures against
                        the TXT records mailstead published (R_DKIM_ALLOW for both selectors).

States: ``active`` (signs and is in DNS), ``published-only`` (in DNS, not signing: before activation or
after it was superseded), ``retired`` (gone from DNS and from the mail host; the key file stays in the
secrets directory so a selector is never reused).

Rotation: ``rotate`` adds a new RSA + Ed25519 pair as published-only (DNS then carries old and new);
deploy; wait for the TTL; ``activate`` makes the newest published-only pair active and turns the old
active pair into published-only (messages in flight still verify); deploy; later ``retire`` retires every
published-only key older than the active ones; deploy.

CLI: ``python -m mailstead dkim list|rotate|activate|retire --domain D [--env ENV | --secrets-dir DIR]``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailstead import secrets

ACTIVE, PUBLISHED, RETIRED = "active", "published-only", "retired"
STATES = (ACTIVE, PUBLISHED, RETIRED)
MIN_RSA_BITS = 2048
# the public key a dry run shows for a key it did not create (not base64: no resolver takes it for a key)
PLACEHOLDER = "<new-key-made-by-the-deploy>"


class DkimError(Exception):
    pass


@dataclass(frozen=True)
class DkimPublic:
    """One published DKIM selector, what DNS needs of it: ``algorithm`` 'rsa' | 'ed25519', ``public`` the
    base64 of the TXT record's ``p=`` tag."""

    selector: str
    algorithm: str
    public: str

    def txt(self) -> str:
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: str  # 'rsa' | 'ed25519'
    state: str
    created: str
    path: Path  # private key file on the deploy machine
    bits: int | None = None

    def public(self) -> str:
        """Base64 for the DKIM TXT ``p=`` tag: RSA SubjectPublicKeyInfo DER; Ed25519 raw 32 bytes (RFC 8463)."""
        data = self.path.read_bytes()
        if self.algorithm == "rsa":
            # our own key file: skip the (slow, ~0.15 s) RSA consistency check; signing tests cover it
            key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
            der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return base64.b64encode(der).decode()
        raw = base64.b64decode(data.strip())
        key = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(pub).decode()

    def txt(self) -> str:
        return self.public_record().txt()

    def public_record(self) -> DkimPublic:
        return DkimPublic(self.selector, self.algorithm, self.public())

    @property
    def published(self) -> bool:
        return self.state in (ACTIVE, PUBLISHED)


def _load_index(d: Path) -> list[dict]:
    idx = d / "index.json"
    if not idx.exists():
        return []
    return json.loads(idx.read_text())["selectors"]


def _save_index(d: Path, entries: list[dict]) -> None:
    secrets.write_private(d / "index.json", (json.dumps({"selectors": entries}, indent=2) + "\n").encode())


def _to_keys(domain: str, d: Path, entries: list[dict]) -> list[DkimKey]:
    return [
        DkimKey(domain, e["selector"], e["algorithm"], e["state"], e["created"], d / e["file"], e.get("bits"))
        for e in entries
    ]


def _new_selectors(entries: list[dict], today: _dt.date) -> tuple[str, str]:
    """(RSA selector, Ed25519 selector) of a new pair made ``today``."""
    taken = {e["selector"] for e in entries}
    stamp = today.strftime("%Y%m%d")
    suffix = ""
    n = 0
    while f"r{stamp}{suffix}" in taken or f"e{stamp}{suffix}" in taken:
        n += 1
        suffix = chr(ord("a") + n)  # second rotation on one day: r20261126b
    return f"r{stamp}{suffix}", f"e{stamp}{suffix}"


def _new_pair(d: Path, entries: list[dict], rsa_bits: int, state: str, today: _dt.date) -> list[dict]:
    if rsa_bits < MIN_RSA_BITS:
        raise DkimError(f"weak DKIM key: dkim_rsa_bits={rsa_bits}; use 2048 or more (RFC 8301)")
    created = today.isoformat()
    rsa_sel, ed_sel = _new_selectors(entries, today)

    rkey = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    secrets.write_private(
        d / f"{rsa_sel}.key",
        rkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    ekey = ed25519.Ed25519PrivateKey.generate()
    seed = ekey.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pub = ekey.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    secrets.write_private(d / f"{ed_sel}.key", base64.b64encode(seed + pub))
    return [
        {"selector": rsa_sel, "algorithm": "rsa", "bits": rsa_bits, "state": state, "created": created, "file": f"{rsa_sel}.key"},
        {"selector": ed_sel, "algorithm": "ed25519", "bits": None, "state": state, "created": created, "file": f"{ed_sel}.key"},
    ]


def ensure_keys(secrets_dir: str | os.PathLike, domain: str, rsa_bits: int = 2048, today: _dt.date | None = None) -> list[DkimKey]:
    """The domain's keys; the first call creates one active RSA + Ed25519 pair, later calls reuse them."""
    d = secrets.dkim_dir(secrets_dir, domain)
    secrets.private_dir(d.parent)
    secrets.private_dir(d)
    entries = _load_index(d)
    if not any(e["state"] == ACTIVE for e in entries):
        if rsa_bits < MIN_RSA_BITS:
            raise DkimError(f"weak DKIM key: dkim_rsa_bits={rsa_bits}; use 2048 or more (RFC 8301)")
        entries += _new_pair(d, entries, rsa_bits, ACTIVE, today or _dt.date.today())
        _save_index(d, entries)
    return _to_keys(domain, d, entries)


def planned_keys(secrets_dir: str | os.PathLike, domain: str, today: _dt.date | None = None) -> list[DkimPublic]:
    """What ``ensure_keys`` would create now, without creating it: the active RSA + Ed25519 pair of a domain
    that has no active key (selectors as they would be named, ``PLACEHOLDER`` as their public key), or []."""
    entries = _load_index(secrets.dkim_dir(secrets_dir, domain))
    if any(e["state"] == ACTIVE for e in entries):
        return []
    rsa_sel, ed_sel = _new_selectors(entries, today or _dt.date.today())
    return [DkimPublic(rsa_sel, "rsa", PLACEHOLDER), DkimPublic(ed_sel, "ed25519", PLACEHOLDER)]


def keys(secrets_dir: str | os.PathLike, domain: str) -> list[DkimKey]:
    d = secrets.dkim_dir(secrets_dir, domain)
    return _to_keys(domain, d, _load_index(d))


def published_keys(secrets_dir: str | os.PathLike, domain: str) -> list[DkimKey]:
    return [k for k in keys(secrets_dir, domain) if k.published]


def active_keys(secrets_dir: str | os.PathLike, domain: str) -> list[DkimKey]:
    return [k for k in keys(secrets_dir, domain) if k.state == ACTIVE]


def dkim_public(secrets_dir: str | os.PathLike, domains, rsa_bits: int = 2048, create: bool = True,
                placeholders: bool = False) -> dict:
    """{domain: [DkimPublic]} for the DNS records model. Missing keys are created, unless create=False: then
    nothing is written and the keys a domain lacks are left out, or with ``placeholders`` shown as
    ``planned_keys`` gives them (a dry run's plan)."""
    out = {}
    for dom in domains:
        ks = ensure_keys(secrets_dir, dom, rsa_bits) if create else keys(secrets_dir, dom)
        out[dom.lower()] = [k.public_record() for k in ks if k.published]
        if not create and placeholders:
            out[dom.lower()] += planned_keys(secrets_dir, dom)
    return out


def rotate(secrets_dir, domain: str, rsa_bits: int = 2048, today: _dt.date | None = None) -> list[DkimKey]:
    d = secrets.dkim_dir(secrets_dir, domain)
    ensure_keys(secrets_dir, domain, rsa_bits, today)
    entries = _load_index(d)
    new = _new_pair(d, entries, rsa_bits, PUBLISHED, today or _dt.date.today())
    _save_index(d, entries + new)
    return _to_keys(domain, d, new)


def activate(secrets_dir, domain: str) -> list[DkimKey]:
    """Newest published-only pair → active; the previously active keys → published-only (still in DNS)."""
    d = secrets.dkim_dir(secrets_dir, domain)
    entries = _load_index(d)
    active_created = max((e["created"] + e["selector"][1:] for e in entries if e["state"] == ACTIVE), default="")
    candidates = [e for e in entries if e["state"] == PUBLISHED and e["created"] + e["selector"][1:] > active_created]
    if not candidates:
        raise DkimError(f"{domain}: no published-only key newer than the active one; run `dkim rotate` first")
    newest = max(e["created"] + e["selector"][1:] for e in candidates)
    for e in entries:
        if e["state"] == ACTIVE:
            e["state"] = PUBLISHED
    for e in entries:
        if e["state"] == PUBLISHED and e["created"] + e["selector"][1:] == newest:
            e["state"] = ACTIVE
    _save_index(d, entries)
    return [k for k in _to_keys(domain, d, entries) if k.state == ACTIVE]


def retire(secrets_dir, domain: str) -> list[DkimKey]:
    """Retire every published-only key older than the active ones (they leave DNS and the mail host)."""
    d = secrets.dkim_dir(secrets_dir, domain)
    entries = _load_index(d)
    active_created = min((e["created"] + e["selector"][1:] for e in entries if e["state"] == ACTIVE), default=None)
    if active_created is None:
        raise DkimError(f"{domain}: no active key")
    retired = []
    for e in entries:
        if e["state"] == PUBLISHED and e["created"] + e["selector"][1:] < active_created:
            e["state"] = RETIRED
            retired.append(e)
    if not retired:
        raise DkimError(f"{domain}: nothing to retire (no published-only key older than the active one)")
    _save_index(d, entries)
    return _to_keys(domain, d, retired)


# -------------------------------------------------------------------------------------------- CLI
def _settings_for(args) -> tuple[str, int, list[str]]:
    if args.env:
        from mailstead.inventory import load_environment_settings

        env = load_environment_settings(args.env, args.inventory)
        return str(env.secrets_dir), int(env.dkim_rsa_bits), list(env.domains)
    return args.secrets_dir, args.rsa_bits, []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead dkim", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["list", "rotate", "activate", "retire"])
    p.add_argument("--domain", help="mail domain (default for list: all domains of --env)")
    p.add_argument("--env", help="environment whose settings give secrets_dir and dkim_rsa_bits")
    p.add_argument("--inventory", default="inventory.py", metavar="FILE",
                   help="inventory file, loaded as pyinfra loads it (default: inventory.py)")
    p.add_argument("--secrets-dir", default="secrets")
    p.add_argument("--rsa-bits", type=int, default=2048)
    args = p.parse_args(argv)
    try:
        secrets_dir, bits, env_domains = _settings_for(args)
        domains = [args.domain] if args.domain else env_domains
        if not domains:
            p.error("--domain is required (or --env for list)")
        if args.action != "list" and len(domains) != 1:
            p.error(f"{args.action} needs --domain")
        dom = domains[0]
        if args.action == "rotate":
            for k in rotate(secrets_dir, dom, bits):
                print(f"{dom}: new {k.algorithm} selector {k.selector} ({k.state}); deploy to publish it")
        elif args.action == "activate":
            for k in activate(secrets_dir, dom):
                print(f"{dom}: {k.algorithm} selector {k.selector} is now active; deploy to sign with it")
        elif args.action == "retire":
            for k in retire(secrets_dir, dom):
                print(f"{dom}: {k.algorithm} selector {k.selector} retired; deploy to drop it from DNS")
        for d in domains:
            if args.action == "list":
                for k in keys(secrets_dir, d):
                    bits_s = f" {k.bits} bits" if k.bits else ""
                    print(f"{d}\t{k.selector}\t{k.algorithm}{bits_s}\t{k.state}\tcreated {k.created}")
    except DkimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # settings errors: their own message, no traceback
        if type(exc).__name__ == "SettingsError":
            print(str(exc), file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
