"""The environment's settings (`EnvironmentSettings`): every value that is the same for all hosts of one
environment — its mail domains, users and aliases, the DNS provider and the policies DNS publishes — written
once in group_data/<environment>.py (or group_data/all.py) and read from here; and what the environment's
hosts add to it (the mail hosts, the traps and the MX list)."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal, Mapping

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from mailstead import policies
from mailstead.secrets import secrets_root
from mailstead.settings.checks import _SemanticIssues, environment_semantic_issues
from mailstead.settings.errors import _CONTROL_RE, Issue, _py, _show
from mailstead.settings.fields import (
    _DMARC_SIZE_RE,
    DMARC_REMOVED_TAGS,
    DMARC_TAGS,
    LOCALPART_RULE,
    Address,
    AliasSource,
    DomainName,
    EnvironmentName,
    HostName,
    LocalPath,
    _address,
    _alias_source,
    _Bad,
    _domain,
    _norm_domain,
    split_address,
)
from mailstead.settings.host import Settings
from mailstead.settings.models import DnsProvider, User, _Model

# --------------------------------------------------------------------------------------------
# What the environment's hosts add: mail hosts, traps, MX


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


def password_hashes_path(secrets_dir: str, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else secrets_root(secrets_dir) / p


def read_password_hashes(secrets_dir: Any, name: Any) -> dict[str, str]:
    """{address: hash} of the password_hashes_file ({} while it does not exist: the first `user add` makes it);
    an unreadable file is a settings error that names the file (never its content)."""
    if not isinstance(name, str) or not isinstance(secrets_dir, str):
        return {}
    path = password_hashes_path(secrets_dir, name)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"password_hashes_file {str(path)!r} is not a JSON object of address -> hash "
                         f"({type(exc).__name__}); write it as {{\"alice@example.org\": \"{{BLF-CRYPT}}...\"}}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"password_hashes_file {str(path)!r} is not a JSON object of address -> hash; write it as "
                         '{"alice@example.org": "{BLF-CRYPT}..."}')
    return data

# --------------------------------------------------------------------------------------------
# The environment's settings


class EnvironmentSettings(_Model):
    """The settings of one environment (group_data/<environment>.py and group_data/all.py): set once, the same
    for every host of the environment."""

    environment: EnvironmentName
    """The environment's name (from its hosts' `environment`)."""

    # mail
    domains: list[DomainName] = Field(min_length=1)
    """Mail domains served by this environment; the first is the primary domain."""
    users: list[User] = Field(default_factory=list)
    """Mailboxes: [{'address': ..., 'password_hash': ..., 'quota': '2G'}, ...]."""
    aliases: dict[AliasSource, list[Address]] = Field(default_factory=dict)
    """Aliases: source address (or '@domain' catch-all) -> list of targets (local or remote addresses)."""
    admin_email: Address
    """Postmaster / report address (DMARC rua, TLS-RPT, ACME account). Required."""

    # DNS
    dns: DnsProvider = Field(default_factory=DnsProvider)
    """DNS provider: {'provider': 'powerdns', 'api_url': ..., 'secret_file': ...}; never the secret itself."""
    dnssec: StrictBool = False
    """The zones are DNSSEC-signed: publish TLSA (DANE) records."""
    dns_ttl: StrictInt = 3600
    """TTL of the records mailstead publishes (seconds)."""

    # policies
    dmarc: dict[str, str] = Field(default_factory=dict)
    """DMARC record tags, merged over the default {'p': 'reject', 'np': 'reject', 'adkim': 's', 'aspf': 's',
    'rua': 'mailto:<admin_email>'}; a tag set to None is dropped. DMARCbis: pct, ri and rf are gone."""
    mta_sts_mode: Literal["enforce", "testing", "none"] = "enforce"
    """MTA-STS policy mode: enforce, testing or none."""
    mta_sts_max_age: StrictInt = 604800
    """MTA-STS policy max_age in seconds (86400 .. 31557600)."""
    tls_rpt_email: Address | None = None
    """TLS-RPT report address; None = admin_email."""
    dkim_rsa_bits: StrictInt = 2048
    """RSA DKIM key size: 2048, 3072 or 4096 (less than 2048 is weak, RFC 8301)."""
    secrets_dir: LocalPath = "secrets"
    """Directory of secrets on the deploy machine (relative to the project directory); never in git."""
    password_hashes_file: LocalPath | None = None
    """A JSON file in secrets_dir ({address: password_hash}) holding the hashes of users listed without
    `password_hash` (so hashes need not be in git; `python -m mailstead user add|passwd` writes there when this is
    set); None = every user has its password_hash in group_data."""

    # what the environment's hosts add (not group_data keys)
    mail_hosts: tuple[MailHost, ...] = ()
    """The environment's hosts in the mailservers group (from inventory.py)."""
    spamtraps: tuple[Spamtrap, ...] = ()
    """The environment's hosts in the spamtraps group (from inventory.py)."""
    mx: tuple[MxRecord, ...] = ()
    """The MX list: traps at 10 (first) and 30 (last), mail hosts at 20."""
    caa_issuer: DomainName = "letsencrypt.org"
    """The hosts' `tls.caa_issuer` (one value for the environment)."""
    hosts: tuple[Settings, ...] = ()
    """The settings of every host of the environment."""

    # ---------------------------------------------------------------- field validators

    @field_validator("domains", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"{_show(value)} is a string, not a list; write domains = [{_norm_domain(value)!r}]")
        if isinstance(value, (list, tuple)):
            out = []
            for i, d in enumerate(value):
                if isinstance(d, str):
                    try:
                        d = _domain(d)
                    except _Bad as e:
                        raise ValueError(f"domains[{i}] = {_show(d)} {e}; write a name like 'example.org'") from None
                out.append(d)
            dupes = sorted({d for d in out if isinstance(d, str) and out.count(d) > 1})
            if dupes:
                raise ValueError(f"{', '.join(dupes)} is listed twice; list each domain once")
            return out
        return value

    @field_validator("aliases", mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[Any, Any] = {}
        for source, targets in value.items():
            fix = "write aliases = {'info@example.org': ['alice@example.org']}"
            if not isinstance(source, str):
                raise ValueError(f"source {_show(source)} is not an address or '@domain' catch-all; {fix}")
            try:
                src = _alias_source(source)
            except _Bad as e:
                raise ValueError(f"source {_show(source)} {e}; {fix}") from None
            fix = f"write aliases = {{{src!r}: ['alice@example.org']}}"
            if isinstance(targets, str):
                targets = [targets]  # a single target is fine
            if isinstance(targets, (list, tuple)):
                norm = []
                for t in targets:
                    if not isinstance(t, str):
                        raise ValueError(f"target {_show(t)} of {src} is not an email address; {fix}")
                    try:
                        norm.append(_address(t))
                    except _Bad as e:
                        raise ValueError(f"target {_show(t)} of {src} {e}; {fix}") from None
                if not norm:
                    raise ValueError(f"{src} has no target; {fix}")
                targets = norm
            if src in out:
                raise ValueError(f"{src} is listed twice; list each alias once")
            out[src] = targets
        return out

    @field_validator("dmarc", mode="before")
    @classmethod
    def _dmarc(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for tag, val in value.items():
            if tag in DMARC_REMOVED_TAGS:
                raise ValueError(f"tag {tag!r} is not allowed: {DMARC_REMOVED_TAGS[tag]}")
            if tag == "v":
                continue  # always v=DMARC1
            if tag not in DMARC_TAGS:
                close = difflib.get_close_matches(str(tag), DMARC_TAGS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(f"unknown DMARC tag {tag!r}; {hint}allowed tags: {', '.join(DMARC_TAGS)}")
            if val is None:
                continue  # None drops a default tag
            if not isinstance(val, str):
                raise ValueError(f"{tag} = {_show(val)} must be a string; write dmarc = {{'{tag}': '...'}}")
            bad = _CONTROL_RE.search(val)
            if bad:
                raise ValueError(f"{tag} = {_show(val)} contains a control character ({bad.group()!r}); "
                                 f"write dmarc = {{'{tag}': '...'}} on one line")
            v = val.strip(" ")
            ok = {
                "p": ("none", "quarantine", "reject"),
                "sp": ("none", "quarantine", "reject"),
                "np": ("none", "quarantine", "reject"),
                "adkim": ("r", "s"),
                "aspf": ("r", "s"),
                "psd": ("y", "n", "u"),
                "t": ("y", "n"),
            }.get(tag)
            if ok and v not in ok:
                raise ValueError(
                    f"{tag} = {_show(val)} is not a DMARC value; write dmarc = {{'{tag}': {ok[-1]!r}}} "
                    f"(one of {', '.join(ok)})"
                )
            if tag in ("rua", "ruf"):
                for uri in v.split(","):
                    address, bang, size = uri[7:].partition("!")
                    if not uri.startswith("mailto:") or split_address(address) is None or (
                        bang and not _DMARC_SIZE_RE.fullmatch(size)
                    ):
                        raise ValueError(
                            f"{tag} = {_show(val)} is not a list of mailto: URIs (mailto:address or "
                            f"mailto:address!10m, comma-separated; local parts of {LOCALPART_RULE}); "
                            f"write dmarc = {{'{tag}': 'mailto:dmarc@example.org'}}"
                        )
            if tag == "fo" and not re.fullmatch(r"[01ds](?::[01ds])*", v):
                raise ValueError(f"fo = {_show(val)} is not a DMARC fo value; write dmarc = {{'fo': '1'}}")
            out[tag] = v
        return out

    @field_validator("dkim_rsa_bits")
    @classmethod
    def _dkim_bits(cls, value: int) -> int:
        if value < 2048:
            raise ValueError(f"{value} is a weak DKIM key (RFC 8301 needs at least 2048 bits); write dkim_rsa_bits = 2048")
        if value not in (2048, 3072, 4096):
            raise ValueError(f"{value} is not a supported DKIM key size; write dkim_rsa_bits = 2048 (or 3072, 4096)")
        return value

    @field_validator("dns_ttl")
    @classmethod
    def _ttl(cls, value: int) -> int:
        if not 60 <= value <= 86400:
            raise ValueError(f"{value} is outside 60..86400 seconds; write dns_ttl = 3600")
        return value

    @field_validator("mta_sts_max_age")
    @classmethod
    def _max_age(cls, value: int) -> int:
        if not 86400 <= value <= 31557600:
            raise ValueError(f"{value} is outside 86400..31557600 seconds (RFC 8461); write mta_sts_max_age = 604800")
        return value

    @field_validator("password_hashes_file")
    @classmethod
    def _hashes_file(cls, value: str | None, info) -> str | None:
        if value is not None:
            read_password_hashes(info.data.get("secrets_dir") or "secrets", value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _hashes_from_file(cls, data: Any) -> Any:
        """Users listed without password_hash get theirs from password_hashes_file (read on the deploy machine)."""
        if not isinstance(data, Mapping) or not data.get("password_hashes_file"):
            return data
        users = data.get("users")
        if not isinstance(users, list) or all(not isinstance(u, Mapping) or "password_hash" in u for u in users):
            return data
        try:
            hashes = read_password_hashes(data.get("secrets_dir") or "secrets", data["password_hashes_file"])
        except ValueError:  # reported by the field's own check (_hashes_file), with the file's name
            return data
        data = dict(data)
        data["users"] = [{**u, "password_hash": hashes[u.get("address")]}
                         if isinstance(u, Mapping) and "password_hash" not in u and u.get("address") in hashes
                         else u for u in users]
        return data

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_admin(cls, data: Any) -> Any:
        parts = split_address(data.get("admin_email")) if isinstance(data, Mapping) else None
        if parts is not None:
            admin = "@".join(parts)
            data = dict(data)
            if data.get("tls_rpt_email") is None:
                data["tls_rpt_email"] = admin
            dmarc = data.get("dmarc")
            if dmarc is None or isinstance(dmarc, Mapping):
                base = {"p": "reject", "np": "reject", "adkim": "s", "aspf": "s", "rua": f"mailto:{admin}"}
                merged = {**base, **(dmarc or {})}
                data["dmarc"] = merged
        return data

    # ---------------------------------------------------------------- cross-field checks

    @model_validator(mode="after")
    def _cross_checks(self) -> "EnvironmentSettings":
        issues = environment_semantic_issues(self)
        if issues:
            raise _SemanticIssues(issues)
        return self

    # ---------------------------------------------------------------- derived values

    @property
    def sending_hosts(self) -> tuple[MailHost, ...]:
        """The hosts that send the environment's mail (SPF)."""
        return self.mail_hosts

    @property
    def primary_domain(self) -> str:
        return self.domains[0]

    @property
    def mailbox_addresses(self) -> list[str]:
        return [u.address for u in self.users]

    @property
    def effective_aliases(self) -> dict[str, list[str]]:
        """`aliases` plus postmaster@ and abuse@ of every domain (RFC 5321/2142) → admin_email
        where neither a mailbox nor an alias of that name exists."""
        out = dict(self.aliases)
        boxes = set(self.mailbox_addresses)
        for d in self.domains:
            for local in ("postmaster", "abuse"):
                a = f"{local}@{d}"
                if a not in out and a not in boxes and a != self.admin_email:
                    out[a] = [self.admin_email]
        return out

    @property
    def dmarc_record(self) -> str:
        """The TXT value of _dmarc.<domain>."""
        return policies.dmarc_record(self.dmarc)


def hosts_view(hosts: list[Settings]) -> dict[str, Any]:
    """What the hosts of one environment add to its settings: the mail hosts, the traps, the MX list and the one
    CAA issuer (the EnvironmentSettings fields that are not group_data keys)."""
    mail = tuple(MailHost(fqdn=h.fqdn, ipv4=h.ipv4, ipv6=h.ipv6) for h in hosts if h.is_mailserver)
    traps = tuple(
        Spamtrap(fqdn=h.fqdn, ipv4=h.ipv4, ipv6=h.ipv6, position=h.spamtrap_position)
        for h in hosts if h.is_spamtrap
    )
    mx = [MxRecord(preference=MX_PREFERENCE[t.position], host=t.fqdn) for t in traps]
    mx += [MxRecord(preference=MX_PREFERENCE["mail"], host=m.fqdn) for m in mail]
    mx.sort(key=lambda r: (r.preference, r.host))
    view: dict[str, Any] = {"mail_hosts": mail, "spamtraps": traps, "mx": tuple(mx), "hosts": tuple(hosts)}
    if hosts:
        view["caa_issuer"] = hosts[0].tls.caa_issuer
    return view


HOSTS_VIEW_FIELDS = ("mail_hosts", "spamtraps", "mx", "caa_issuer", "hosts")


def environment_issues(name: str, hosts: list[Settings], sources: Mapping[str, Mapping[str, str]]) -> list[Issue]:
    """Problems of an environment's hosts as a whole: no host, no mail host, duplicate names, and a CAA issuer
    that differs between hosts. (``sources``: host fqdn -> key -> file, for the message.)"""
    if not hosts:
        return [Issue("inventory.py", "", f"environment {name!r} has no hosts; add hosts to its group")]
    issues: list[Issue] = []
    envs = sorted({h.environment for h in hosts})
    if envs != [name]:
        return [Issue("inventory.py", "environment", f"hosts of different environments ({', '.join(envs)}) were "
                                                     "combined; pass the hosts of one environment")]
    if not any(h.is_mailserver for h in hosts):
        issues.append(Issue("inventory.py", "", f"environment {name!r} has no host in the mailservers group; "
                                                "add at least one mail host", [h.fqdn for h in hosts]))
    names = [h.fqdn for h in hosts]
    for n in sorted({n for n in names if names.count(n) > 1}):
        issues.append(Issue("inventory.py", "fqdn", f"{n!r} is used by {names.count(n)} hosts of {name!r}; give "
                                                    "every host its own name"))
    differing = [h for h in hosts[1:] if h.tls.caa_issuer != hosts[0].tls.caa_issuer]
    if differing:
        def src(h: Settings) -> str:
            return sources.get(h.fqdn, {}).get("tls", f"group_data/{name}.py")

        where = "; ".join(f"{h.fqdn} gets {_py(h.tls.caa_issuer)} from {src(h)}" for h in [hosts[0]] + differing[:3])
        issues.append(Issue(src(differing[0]), "tls.caa_issuer",
                            f"hosts of environment {name!r} disagree ({where}); the CAA record is environment-wide: "
                            f"set tls = {{..., 'caa_issuer': ...}} once in group_data/{name}.py"))
    return issues
