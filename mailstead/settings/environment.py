"""The environment-wide view (all hosts of one environment): what DNS is computed from."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal, Mapping

from mailstead import policies
from mailstead.settings.errors import Issue, SettingsError, _py
from mailstead.settings.fields import (
    DMARC_TAGS,
    ENVIRONMENT_WIDE_FIELDS,
    Address,
    AliasSource,
    DomainName,
    EnvironmentName,
    HostName,
    LocalPath,
    PlainText,
)
from mailstead.settings.host import Settings
from mailstead.settings.models import DnsProvider, User, _Model

# --------------------------------------------------------------------------------------------
# Environment-wide view (DNS)


class MailHost(_Model):
    fqdn: HostName
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None


class Spamtrap(_Model):
    fqdn: HostName
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None
    position: Literal["first", "last"]


class MxRecord(_Model):
    preference: int
    host: HostName


MX_PREFERENCE = {"first": 10, "mail": 20, "last": 30}


class EnvironmentSettings(_Model):
    """All hosts of one environment: what DNS publishes."""

    environment: EnvironmentName
    domains: list[DomainName]
    mail_hosts: tuple[MailHost, ...]
    spamtraps: tuple[Spamtrap, ...]
    mx: tuple[MxRecord, ...]
    sending_hosts: tuple[MailHost, ...]
    admin_email: Address
    users: list[User]
    aliases: dict[AliasSource, list[Address]]
    dns: DnsProvider
    dnssec: bool
    dns_ttl: int
    dmarc: dict[Literal[DMARC_TAGS], PlainText]
    mta_sts_mode: Literal["enforce", "testing", "none"]
    mta_sts_max_age: int
    tls_rpt_email: Address
    dkim_rsa_bits: int
    caa_issuer: DomainName
    secrets_dir: LocalPath
    hosts: tuple[Settings, ...]

    @property
    def primary_domain(self) -> str:
        return self.domains[0]

    @property
    def dmarc_record(self) -> str:
        return policies.dmarc_record(self.dmarc)

    @classmethod
    def from_hosts(
        cls, hosts: list[Settings], sources: Mapping[str, Mapping[str, str]] | None = None
    ) -> "EnvironmentSettings":
        """Combine the settings of all hosts of one environment.

        ``sources`` (host fqdn -> key -> file) only improves the error message."""
        issues = environment_issues(hosts, sources or {})
        if issues:
            raise SettingsError(issues)
        first = next((h for h in hosts if h.is_mailserver), hosts[0])
        mail = tuple(MailHost(fqdn=h.fqdn, ipv4=h.ipv4, ipv6=h.ipv6) for h in hosts if h.is_mailserver)
        traps = tuple(
            Spamtrap(fqdn=h.fqdn, ipv4=h.ipv4, ipv6=h.ipv6, position=h.spamtrap_position)
            for h in hosts if h.is_spamtrap
        )
        mx = [MxRecord(preference=MX_PREFERENCE[t.position], host=t.fqdn) for t in traps]
        mx += [MxRecord(preference=MX_PREFERENCE["mail"], host=m.fqdn) for m in mail]
        mx.sort(key=lambda r: (r.preference, r.host))
        return cls(
            environment=first.environment,
            domains=list(first.domains),
            mail_hosts=mail,
            spamtraps=traps,
            mx=tuple(mx),
            sending_hosts=mail,
            admin_email=first.admin_email,
            users=list(first.users),
            aliases=dict(first.aliases),
            dns=first.dns,
            dnssec=first.dnssec,
            dns_ttl=first.dns_ttl,
            dmarc=dict(first.dmarc),
            mta_sts_mode=first.mta_sts_mode,
            mta_sts_max_age=first.mta_sts_max_age,
            tls_rpt_email=first.tls_rpt_email or first.admin_email,
            dkim_rsa_bits=first.dkim_rsa_bits,
            caa_issuer=first.tls.caa_issuer,
            secrets_dir=first.secrets_dir,
            hosts=tuple(hosts),
        )


def environment_issues(hosts: list[Settings], sources: Mapping[str, Mapping[str, str]]) -> list[Issue]:
    """Problems of an environment as a whole: disagreeing hosts, missing mail host, duplicates."""
    issues: list[Issue] = []
    if not hosts:
        return [Issue("inventory.py", "", "the environment has no hosts; add hosts to its group")]
    env = hosts[0].environment

    def src(h: Settings, key: str) -> str:
        if h.fqdn not in sources:
            return f"group_data/{env}.py"
        return sources[h.fqdn].get(key, "the default")

    envs = sorted({h.environment for h in hosts})
    if len(envs) > 1:
        issues.append(Issue("inventory.py", "environment", f"hosts of different environments ({', '.join(envs)}) "
                                                           "were combined; pass the hosts of one environment"))
        return issues
    if not any(h.is_mailserver for h in hosts):
        issues.append(Issue("inventory.py", "", f"environment {env!r} has no host in the mailservers group; "
                                                "add at least one mail host", [h.fqdn for h in hosts]))
    names: dict[str, int] = {}
    for h in hosts:
        names[h.fqdn] = names.get(h.fqdn, 0) + 1
    for n, c in names.items():
        if c > 1:
            issues.append(Issue("inventory.py", "fqdn", f"{n!r} is used by {c} hosts of {env!r}; give every "
                                                        "host its own name"))
    for fld in ENVIRONMENT_WIDE_FIELDS + ("tls.caa_issuer",):
        def get(h: Settings, f: str = fld) -> Any:
            obj: Any = h
            for part in f.split("."):
                obj = getattr(obj, part)
            return obj

        ref = get(hosts[0])
        differing = [h for h in hosts[1:] if get(h) != ref]
        if differing:
            top = fld.split(".")[0]
            where = "; ".join(
                f"{h.fqdn} gets {_py(get(h))[:60]} from {src(h, top)}" for h in [hosts[0]] + differing[:3]
            )
            issues.append(Issue(
                src(differing[0], top), fld,
                f"hosts of environment {env!r} disagree ({where}); it is environment-wide: set it once in "
                f"group_data/{env}.py (or group_data/all.py), not per role or per host",
            ))
    return issues
