"""`python -m mailstead domain add|list`: a new mail domain for an environment, its DNS plan, and a deploy of only
the stages a domain lives in.

  domain list                       the environment's domains (all environments without --env)
  domain add DOMAIN                 add DOMAIN to the environment's `domains`, print the DNS records it needs
                                    (the same plan as `dns plan`), then deploy what a domain touches
      --apply-dns                   also apply the environment's DNS plan (never done without this flag)
      --dry                         change nothing: the edit is undone at the end, no DKIM key is made, no DNS
                                    write, the deploy runs with pyinfra --dry
      --no-deploy                   edit group_data (and plan/apply DNS) only

All take --env ENV (default: the only environment) and --inventory FILE. The edit lands in the marked block of
the environment's group_data file (mailstead/groupdata.py), like `user` and `alias`; the domain is checked
before anything is written and the whole inventory is validated again after the edit (a bad edit is undone).
A domain the environment already has, or one another environment serves, is refused (exit 1, nothing changed);
so is a domain whose zone the DNS provider does not have (create the zone there first, then run `domain add`).

What a new domain needs on the mail hosts (MAILSTEAD_STAGES, `--limit` each mail host of the environment):
its DKIM key (dkim: made on the deploy machine, installed on the host), rspamd's signing table (rspamd), the
OpenSMTPD tables of our domains (opensmtpd; Dovecot rides along for any restart those stages left pending),
the MTA-STS policy and autoconfig site of nginx (nginx), and the certificate names mta-sts.DOMAIN and
autoconfig.DOMAIN (tls: the lab CA; certificates + certificate_issue: ACME). The ACME issuance needs those
names in DNS, so certificate_issue runs only with --apply-dns; without it the next full deploy (after
`dns apply`) gets the certificate. The spamtraps list no domains (their MX records are DNS only).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import TypeAdapter, ValidationError

from mailstead import groupdata
from mailstead.day2 import _environments, deploy_users, pick_env
from mailstead.dns import desired_records, prepare
from mailstead.dns.records import zone_for_domain
from mailstead.settings import SettingsError
from mailstead.settings.fields import DomainName

STAGES = "tls,certificates,dkim,rspamd,opensmtpd,dovecot,nginx"
AFTER_DNS = "certificate_issue"  # the ACME certificate with the new names: only once they are in DNS


def check_domain(value: str, path) -> str:
    """``value`` as a domain name (lower case, no trailing dot), or SystemExit naming the file, field and fix."""
    try:
        return TypeAdapter(DomainName).validate_python(value)
    except ValidationError as exc:
        why = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise SystemExit(f"{path}: domains: {why}\n(nothing was changed; give a domain name like 'example.org')")


def under(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def zone_problem(env: Any, domain: str, env_name: str, inventory: str) -> str | None:
    """Why the environment's DNS provider cannot take ``domain``'s records (no zone for it), else None.
    Asked before anything is written: the operator creates the zone first."""
    # lazy like mailstead.dns.prepare's: the adapters import requests (and so ssl), which must come after
    # pyinfra_cli's ssl patch (mailstead.settings imports it)
    from mailstead.dns.providers import from_settings

    zone = zone_for_domain(env, domain)
    try:
        provider = from_settings(env.dns, env.secrets_dir)
        if provider is not None:
            provider.list_records(zone)
    except Exception as exc:  # the provider's own words (the adapters redact credentials)
        return (f"the DNS provider of {env_name} ({env.dns.provider}) has no zone {zone}, or refused to list it: "
                f"{exc}\nCreate the zone {zone} at the provider (and delegate the domain to the provider's name "
                f"servers at its registrar), then run `python -m mailstead domain add {domain} --env {env_name} "
                f"--inventory {inventory}` again.")
    return None


def dns_step(env: Any, domain: str, env_name: str, inventory: str, dry: bool, apply_dns: bool) -> tuple[bool, bool]:
    """Print the records ``domain`` needs and the environment's plan against its provider (what `dns plan`
    prints); apply it with ``apply_dns``. Returns (planned without error, DNS is in place)."""
    zone = zone_for_domain(env, domain)
    records = [r for r in desired_records(env, create_keys=not dry, placeholders=dry) if under(r.name, domain)]
    print(f"\nDNS records {domain} needs (zone {zone}):")
    for r in records:
        for line in r.lines():
            print(f"  {line}")
    apply_cmd = f"python -m mailstead dns apply --env {env_name} --inventory {inventory}"
    try:
        plan, text = prepare(env, dry=dry)
    except Exception as exc:  # ApplyError, CredentialError, a provider that cannot be reached: one line
        print(f"\nproblem: planning the DNS of {env_name} failed: {exc}\nFix that, then run `{apply_cmd}`.",
              flush=True)
        return False, False
    print(f"\nDNS plan of {env_name} (the same as `python -m mailstead dns plan --env {env_name}`):\n{text}")
    if plan.provider_obj is None:  # provider 'none': the text lists the records to publish by hand
        return True, False
    if plan.empty:
        return True, True
    if not apply_dns or dry:
        print(f"\nnot applied{' (dry run)' if dry else ''}: run `{apply_cmd}`, or `domain add` with --apply-dns.")
        return True, False
    try:
        n = plan.apply()
    except Exception as exc:
        print(f"\nproblem: applying the DNS plan failed: {exc}\nrun `{apply_cmd}` again.", flush=True)
        return False, False
    print(f"DNS: applied {n} change(s)", flush=True)
    return True, True


def domain_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead domain")
    p.add_argument("action", choices=["add", "list"])
    p.add_argument("domain", nargs="?")
    p.add_argument("--env", default=None)
    p.add_argument("--inventory", default="inventory.py", metavar="FILE")
    p.add_argument("--apply-dns", action="store_true", help="apply the environment's DNS plan (add)")
    p.add_argument("--dry", action="store_true", help="show what add would do; change nothing")
    p.add_argument("--no-deploy", action="store_true", help="edit group_data and plan DNS only")
    args = p.parse_args(argv)
    envs = _environments(args.inventory)
    if args.action == "list":
        for name in [pick_env(envs, args.env, None)] if args.env else sorted(envs):
            for d in envs[name].domains:
                print(f"{d}\t{name}")
        return 0
    if not args.domain:
        p.error("give the DOMAIN")
    env_name = pick_env(envs, args.env, None)
    path = groupdata.environment_file(env_name, args.inventory)
    domain = check_domain(args.domain, path)
    for name, e in envs.items():
        if domain in e.domains:
            where = "already a domain of this environment" if name == env_name else f"a domain of {name}"
            print(f"{domain} is {where}: refused, nothing changed (a domain belongs to one environment; to "
                  f"redeploy it run the deploy, to see its DNS `python -m mailstead dns plan --env {name}`)",
                  file=sys.stderr)
            return 1
    if problem := zone_problem(envs[env_name], domain, env_name, args.inventory):
        print(f"problem: {problem}\n(nothing was changed)", file=sys.stderr)
        return 1
    before = path.read_text() if path.exists() else None
    # a group_data file cannot see another file's values: when this file sets no `domains` (they come from
    # all.py), the block records the environment's whole list
    keeps_own = before is not None and (groupdata.sets_outside_block(before, "domains")
                                        or groupdata.read_domains(before))
    groupdata.edit(path, domains=[domain] if keeps_own else [*envs[env_name].domains, domain])

    def undo() -> None:
        if before is None:
            path.unlink()
        else:
            path.write_text(before)

    try:
        try:
            envs = _environments(args.inventory)
        except SettingsError as exc:
            undo()
            print(f"{exc}\n(the edit of {path} was undone)", file=sys.stderr)
            return 1
        env = envs[env_name]
        if domain not in env.domains:
            undo()
            print(f"{path}: the edit did not reach {env_name}'s domains (a later group_data file sets `domains`?); "
                  "undone: add the domain there by hand", file=sys.stderr)
            return 1
        print(f"{path}: {domain} added to {env_name}'s domains ({', '.join(env.domains)})")
        zones_ok, applied = dns_step(env, domain, env_name, args.inventory, args.dry, args.apply_dns)
        if args.no_deploy:
            return 0 if zones_ok else 1
        stages = STAGES + ("," + AFTER_DNS if applied else "")
        rc = deploy_users(args.inventory, env, stages=stages, dry=args.dry)
        if not applied and not args.dry:
            print(f"\nnext: publish the DNS records (`python -m mailstead dns apply --env {env_name} --inventory "
                  f"{args.inventory}`), then a full deploy, which gets an ACME certificate with the new names.")
        return 1 if rc or not zones_ok else 0
    finally:
        if args.dry:
            undo()
            print(f"dry run: {path} restored")
