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

from mailstead import acme_keys, dkim, pki, secrets
from mailstead.dns.plan import ApplyError, Plan, apply, make_plan
from mailstead.dns.records import Record, compute, zone_for_domain

__all__ = ["desired_records", "zones", "prepare", "stage", "is_dns_host", "Plan", "ApplyError", "Record"]


def is_dns_host(settings: Any, env: Any) -> bool:
    """True for exactly one host per environment (its first mail host by name): the host whose deploy
    run carries the environment's DNS stage, so the zone is planned and applied once, not once per host.
    ``env``: the EnvironmentSettings of ``settings``' environment (all its hosts)."""
    names = sorted(str(h.fqdn) for h in env.mail_hosts) or sorted(str(h.fqdn) for h in env.hosts)
    return bool(names) and settings.fqdn == names[0]


def zones(env: Any) -> list[str]:
    return sorted({zone_for_domain(env, d) for d in env.domains})


def desired_records(env: Any, tls_pubkey_hashes: dict | None = None, create_keys: bool = True,
                    placeholders: bool = False) -> list[Record]:
    """Every record of the environment. DKIM keys a domain lacks are created (``create_keys``); without
    create_keys nothing is written and they are left out, or shown with ``placeholders`` (dkim.PLACEHOLDER)."""
    secrets_dir = env.secrets_dir
    bits = env.dkim_rsa_bits
    pub = dkim.dkim_public(secrets_dir, env.domains, bits, create=create_keys, placeholders=placeholders)
    if tls_pubkey_hashes is None and env.dnssec:
        tls_pubkey_hashes = tls_hashes_from_secrets(env)
    return compute(env, pub, tls_pubkey_hashes)


def tls_hashes_from_secrets(env: Any) -> dict:
    """SHA-256 of each host's TLS public key (SubjectPublicKeyInfo) for TLSA 3 1 1, from the deploy
    machine's secrets directory: the host's ``tls/<fqdn>.spki-sha256`` (hex hashes, one per line - e.g. current
    and next key during a rollover) if present, else its certificate key: for tls.mode 'acme' the ACME
    certificate key (``acme/<fqdn>/cert.key``, mailstead.acme_keys), for 'lab' the certificate the lab CA
    (mailstead.pki) keeps for the host. Hosts without any get no TLSA record."""
    secrets_dir = env.secrets_dir
    ca_dir = secrets.lab_ca_dir(secrets_dir)
    modes = {str(s.fqdn): s.tls.mode for s in getattr(env, "hosts", ())}
    out = {}
    for h in list(env.mail_hosts) + list(env.spamtraps):
        fqdn = str(h.fqdn)
        explicit = secrets.spki_hash_file(secrets_dir, fqdn)
        if explicit.exists():
            out[fqdn] = [x.strip().lower() for x in explicit.read_text().split() if x.strip()]
        elif modes.get(fqdn) == "acme":
            if (spki_hash := acme_keys.cert_key_spki_sha256(secrets_dir, fqdn)) is not None:
                out[fqdn] = [spki_hash]
        elif (spki_hash := pki.host_spki_sha256(ca_dir, fqdn)) is not None:
            out[fqdn] = [spki_hash]
    return out


def prepare(env: Any, provider=None, dry: bool = False) -> tuple[Plan, str]:
    """Plan the environment's records against its provider (read-only) and render the plan for a person.

    Provider 'none' gives an empty Plan and, as the text, the records to publish by hand. ``dry`` (a
    `pyinfra --dry` run): nothing is written on the deploy machine either; DKIM keys not made yet appear
    with a placeholder public key, and such a plan cannot be applied."""
    # Lazy on purpose (no cycle): the adapters import requests, and so ssl. mailstead.settings imports
    # pyinfra_cli, whose import monkey-patches ssl (gevent); ssl imported before that patch makes every HTTPS
    # request fail with RecursionError, and `python -m mailstead dns` imports this package before the settings.
    from mailstead.dns.providers import from_settings

    records = desired_records(env, create_keys=not dry, placeholders=dry)
    note = ""
    if any(dkim.PLACEHOLDER in v for r in records for v in r.values):
        note = (f"\nnote: dry run: DKIM keys not made yet are shown as {dkim.PLACEHOLDER}; "
                "the deploy makes them and publishes their real public keys")
    secrets_dir = env.secrets_dir
    if provider is None:
        provider = from_settings(env.dns, secrets_dir)
    if provider is None:
        lines = ["DNS provider 'none': publish these records yourself:"]
        lines += ["  " + line for r in records for line in r.lines()]
        return Plan(provider="none"), "\n".join(lines) + note
    plan = make_plan(provider, records, zones(env), secrets_dir, env.environment)
    return plan, plan.render() + note


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
