"""DNS: records computed from settings, a printable plan against the provider, and an apply.

Entry points:
  desired_records(env)            every record of the environment (creates missing DKIM keys)
  prepare(env)                    plan (read-only) + its text; the deploy's DNS stage (tasks/dns.py) uses it
  stage(env, dry)                 plan, print, apply unless dry; returns the Plan (the CLI)
  python -m mailstead dns plan|apply --env ENV      (mailstead/dns/cli.py)
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from mailstead.dns.plan import ApplyError, Plan, apply, make_plan
from mailstead.dns.records import Record, _get, compute, zone_for_domain

__all__ = ["desired_records", "zones", "prepare", "stage", "is_dns_host", "Plan", "ApplyError", "Record"]


def is_dns_host(settings: Any, env: Any) -> bool:
    """True for exactly one host per environment (its first mail host by name): the host whose deploy
    run carries the environment's DNS stage, so the zone is planned and applied once, not once per host.
    ``env``: the EnvironmentSettings of ``settings``' environment (all its hosts)."""
    names = sorted(str(h.fqdn) for h in env.mail_hosts) or sorted(str(h.fqdn) for h in env.hosts)
    return bool(names) and settings.fqdn == names[0]


def zones(env: Any) -> list[str]:
    return sorted({zone_for_domain(env, d) for d in _get(env, "domains")})


def desired_records(env: Any, tls_pubkey_hashes: dict | None = None, create_keys: bool = True) -> list[Record]:
    from mailstead import dkim

    secrets_dir = _get(env, "secrets_dir", default="secrets")
    bits = int(_get(env, "dkim_rsa_bits", default=2048))
    pub = dkim.dkim_public(secrets_dir, _get(env, "domains"), bits, create=create_keys)
    if tls_pubkey_hashes is None and _get(env, "dnssec", default=False):
        tls_pubkey_hashes = tls_hashes_from_secrets(env)
    return compute(env, pub, tls_pubkey_hashes)


def tls_hashes_from_secrets(env: Any) -> dict:
    """SHA-256 of each host's TLS public key (SubjectPublicKeyInfo) for TLSA 3 1 1, from the deploy
    machine: ``<secrets_dir>/tls/<fqdn>.spki-sha256`` (hex hashes, one per line - e.g. current and next key
    during a rollover) if present, else the host certificate the lab CA keeps in
    ``<secrets_dir>/lab-ca/hosts/<fqdn>.crt``. Hosts without either get no TLSA record."""
    import hashlib
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    out = {}
    from mailstead.dkim import secrets_root

    secrets = secrets_root(_get(env, "secrets_dir", default="secrets"))
    for h in list(_get(env, "mail_hosts") or []) + list(_get(env, "spamtraps") or []):
        fqdn = str(_get(h, "fqdn"))
        explicit = secrets / "tls" / f"{fqdn}.spki-sha256"
        cert = secrets / "lab-ca" / "hosts" / f"{fqdn}.crt"
        if explicit.exists():
            out[fqdn] = [x.strip().lower() for x in explicit.read_text().split() if x.strip()]
        elif cert.exists():
            c = x509.load_pem_x509_certificate(cert.read_bytes())
            spki = c.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
            out[fqdn] = [hashlib.sha256(spki).hexdigest()]
    return out


def prepare(env: Any, provider=None) -> tuple[Plan, str]:
    """Plan the environment's records against its provider (read-only) and render the plan for a person.

    Provider 'none' gives an empty Plan and, as the text, the records to publish by hand."""
    from mailstead.dns.providers import from_settings

    records = desired_records(env)
    secrets_dir = _get(env, "secrets_dir", default="secrets")
    if provider is None:
        provider = from_settings(_get(env, "dns"), secrets_dir)
    if provider is None:
        lines = ["DNS provider 'none': publish these records yourself:"]
        lines += ["  " + line for r in records for line in r.lines()]
        return Plan(provider="none"), "\n".join(lines)
    plan = make_plan(provider, records, zones(env), secrets_dir, _get(env, "environment"))
    return plan, plan.render()


def stage(env: Any, dry: bool, provider=None, out: TextIO | None = None) -> Plan:
    """The DNS CLI's stage. Prints the plan; applies it unless ``dry``. Returns the Plan (empty plan =
    nothing changed, no write call made). Provider 'none': prints the records to publish by hand."""
    out = out or sys.stdout
    plan, text = prepare(env, provider)
    print(text, file=out)
    if plan.provider_obj is None or dry:
        return plan
    if not plan.empty:
        n = plan.apply()
        print(f"DNS: applied {n} change(s) with {plan.provider_obj.calls['write']} write call(s)", file=out)
    else:
        plan.apply()  # records state only; makes no write call
    return plan
