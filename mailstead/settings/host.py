"""The settings of one host (`Settings`), built from its group_data and host data."""

from __future__ import annotations

import difflib
import re
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal, Mapping

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from mailstead import policies
from mailstead.settings.backup import Backup
from mailstead.settings.check import Check
from mailstead.settings.checks import _ip_check, _SemanticIssues, semantic_issues
from mailstead.settings.errors import _CONTROL_RE, _show
from mailstead.settings.fields import (
    _DMARC_SIZE_RE,
    DMARC_REMOVED_TAGS,
    DMARC_TAGS,
    LOCALPART_RULE,
    ROLES,
    Address,
    AliasSource,
    DomainName,
    EnvironmentName,
    Forwarder,
    HostName,
    LocalPath,
    MirrorUrl,
    PlainText,
    ServerName,
    ZoneOrLabel,
    _address,
    _alias_source,
    _Bad,
    _domain,
    _norm_domain,
    split_address,
)
from mailstead.settings.models import DEFAULT_NTP, DnsProvider, OpenSmtpd, Tls, User, _Model

# --------------------------------------------------------------------------------------------
# The settings of one host


class Settings(_Model):
    """The settings of one host (built from its group_data and host data)."""

    # host facts
    fqdn: HostName
    """The host's name in DNS; defaults to its inventory name."""
    ipv4: IPv4Address | None = None
    """Public IPv4 address (A record, SPF); set in the host data in inventory.py."""
    ipv6: IPv6Address | None = None
    """Public IPv6 address (AAAA record, SPF); set in the host data in inventory.py."""
    roles: tuple[Literal["mailservers", "spamtraps"], ...] = ()
    """Roles, from the host's inventory groups: 'mailservers' or 'spamtraps' (not a group_data key)."""
    groups: tuple[PlainText, ...] = ()
    """All inventory groups of the host (not a group_data key)."""
    environment: EnvironmentName
    """Environment name ([a-z0-9-], e.g. 'staging', 'production'); must be one of the host's inventory groups.
    Set it in group_data/<environment>.py."""
    spamtrap_position: Literal["first", "last"] | None = None
    """Spamtrap hosts only: 'first' = MX preference 10, 'last' = 30 (both refuse connections in this version)."""

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

    # TLS and policies
    tls: Tls = Field(default_factory=Tls)
    """Certificates: {'mode': 'acme', 'acme_directory': ..., 'caa_issuer': 'letsencrypt.org', ...}."""
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

    # OpenSMTPD
    opensmtpd: OpenSmtpd = Field(default_factory=OpenSmtpd)
    """OpenSMTPD source: {'source': 'debian-archive', 'version': '7.9.0p0', 'sha256': ..., ...}."""

    # Dovecot
    imap_starttls: StrictBool = False
    """Also serve IMAP on port 143 with STARTTLS (login only after STARTTLS; plaintext AUTH stays refused);
    False = 143 closed, IMAP only on 993 (implicit TLS)."""

    # time, resolver, system
    ntp_servers: list[ServerName] = Field(default_factory=lambda: list(DEFAULT_NTP))
    """NTS time servers for chrony."""
    ntp_trusted_certs: LocalPath | None = None
    """CA certificate file on the deploy machine that chrony trusts for NTS (the lab's); None = system CAs."""
    chrony_set_clock: StrictBool = True
    """Let chronyd set the clock (False = chronyd -x, the lab)."""
    resolver_forwarders: list[Forwarder] = Field(default_factory=list)
    """Unbound forwarders (IP addresses); [] = full recursion (needed for DNSBLs). For the local-resolver
    stage, which is not built yet: no task reads it in this version."""
    resolver_insecure_domains: list[ZoneOrLabel] = Field(default_factory=list)
    """Domains Unbound treats as DNSSEC-insecure (e.g. 'test' in the lab). For the local-resolver stage,
    which is not built yet."""
    apt_mirror: MirrorUrl | None = None
    """APT mirror URI to configure (http or https, without user:password@); None = keep the mirror already
    configured on the host."""
    ssh_allow_root_keys: StrictBool = True
    """Allow root login with SSH keys (password login is always off). False needs a deploy that logs in as
    another user (ssh_user with _sudo): the check refuses it while the deploy logs in as root."""
    unattended_upgrades: StrictBool = True
    """Install and enable unattended-upgrades."""
    backup: Backup = Field(default_factory=Backup)
    """Backups with restic: {'repository': 'sftp:backup@backup.example.org:/srv/restic/{fqdn}', ...}."""
    check: Check = Field(default_factory=Check)
    """What `python -m mailstead check` looks at: {'dnsbl_zones': [...], 'cert_warn_days': 14, ...}."""

    # ---------------------------------------------------------------- field validators

    @field_validator("ipv4", mode="before")
    @classmethod
    def _ipv4(cls, value: Any) -> Any:
        return _ip_check(value, 4)

    @field_validator("ipv6", mode="before")
    @classmethod
    def _ipv6(cls, value: Any) -> Any:
        return _ip_check(value, 6)

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str) -> str:
        if value in ROLES or value == "all":
            raise ValueError(
                f"{_show(value)} is not an environment name (it is a role or 'all'); write environment = 'production'"
            )
        return value

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

    @field_validator("resolver_insecure_domains", "ntp_servers", "resolver_forwarders", mode="before")
    @classmethod
    def _names(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"{_show(value)} is a string, not a list; write {info.field_name} = [{value!r}]")
        return value  # the entries are checked by their type (ServerName, ZoneOrLabel, Forwarder)

    # ---------------------------------------------------------------- cross-field checks

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_admin(cls, data: Any) -> Any:
        parts = split_address(data.get("admin_email")) if isinstance(data, Mapping) else None
        if parts is not None:
            admin = "@".join(parts)
            data = dict(data)
            tls = data.get("tls")
            if tls is None:
                data["tls"] = {"acme_email": admin}
            elif isinstance(tls, Mapping) and tls.get("acme_email") is None:
                data["tls"] = {**tls, "acme_email": admin}
            if data.get("tls_rpt_email") is None:
                data["tls_rpt_email"] = admin
            dmarc = data.get("dmarc")
            if dmarc is None or isinstance(dmarc, Mapping):
                base = {"p": "reject", "np": "reject", "adkim": "s", "aspf": "s", "rua": f"mailto:{admin}"}
                merged = {**base, **(dmarc or {})}
                data["dmarc"] = merged
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> "Settings":
        issues = semantic_issues(self)
        if issues:
            raise _SemanticIssues(issues)
        return self

    # ---------------------------------------------------------------- derived values

    @property
    def is_mailserver(self) -> bool:
        return "mailservers" in self.roles

    @property
    def is_spamtrap(self) -> bool:
        return "spamtraps" in self.roles

    @property
    def primary_domain(self) -> str:
        return self.domains[0]

    @property
    def mailbox_addresses(self) -> list[str]:
        return [u.address for u in self.users]

    @property
    def acme_email(self) -> str:
        return self.tls.acme_email or self.admin_email

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

    @property
    def addresses(self) -> list[str]:
        return [str(a) for a in (self.ipv4, self.ipv6) if a is not None]

    # ---------------------------------------------------------------- builders
