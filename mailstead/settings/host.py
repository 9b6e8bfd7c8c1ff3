"""The settings of one host (`Settings`), built from its group_data and host data: what may differ from host to
host. What is the same for a whole environment lives in environment.py."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from mailstead.settings.backup import Backup
from mailstead.settings.bruteforce import BruteForce
from mailstead.settings.check import Check
from mailstead.settings.checks import _ip_check, _SemanticIssues, semantic_issues
from mailstead.settings.errors import _show
from mailstead.settings.fields import (
    ROLES,
    EnvironmentName,
    Forwarder,
    HostName,
    LocalPath,
    MirrorUrl,
    PlainText,
    ServerName,
    ZoneOrLabel,
)
from mailstead.settings.firewall import Firewall
from mailstead.settings.models import DEFAULT_NTP, OpenSmtpd, Tls, _Model
from mailstead.settings.rspamd import Rspamd
from mailstead.settings.spamtrap import Spamtrap

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
    """Spamtrap hosts only: 'first' = MX preference 10, 'last' = 30 (see Spamtraps)."""

    # TLS
    tls: Tls = Field(default_factory=Tls)
    """Certificates: {'mode': 'lab', 'acme_directory': ..., 'caa_issuer': 'letsencrypt.org', ...}."""

    # OpenSMTPD
    opensmtpd: OpenSmtpd = Field(default_factory=OpenSmtpd)
    """OpenSMTPD source: {'source': 'debian-archive', 'version': '7.9.0p0', 'sha256': ..., ...}."""

    # spam filtering, DKIM signing
    rspamd: Rspamd = Field(default_factory=Rspamd)
    """Spam filter: {'reject_score': 15, 'add_header_score': 6, 'greylist_timeout': 300, 'dnsbls': {...}, ...}."""

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
    """Forwarders of the host's Unbound (IP addresses, or address@port); [] = full recursion from the root
    (what DNS blocklists need: they refuse queries that come through big public resolvers)."""
    resolver_insecure_domains: list[ZoneOrLabel] = Field(default_factory=list)
    """Domains the host's Unbound does not DNSSEC-validate, and answers from DNS even where Unbound has a
    built-in zone (e.g. 'test' and the TEST-NET reverse zones in the lab)."""
    apt_mirror: MirrorUrl | None = None
    """APT mirror URI to configure (http or https, without user:password@); None = keep the mirror already
    configured on the host."""
    ssh_allow_root_keys: StrictBool = True
    """Allow root login with SSH keys (password login is always off). False needs a deploy that logs in as
    another user (ssh_user with _sudo): the check refuses it while the deploy logs in as root."""
    unattended_upgrades: StrictBool = True
    """Install and enable unattended-upgrades."""
    firewall: Firewall = Field(default_factory=Firewall)
    """Inbound firewall (nftables): {'ssh_port': 22, 'new_per_minute': 120, 'burst': 40, 'max_per_source': 40,
    'extra_input_rules': []}."""
    bruteforce: BruteForce = Field(default_factory=BruteForce)
    """Brute-force blocking (fail2ban, nftables): {'maxretry': 5, 'findtime': 600, 'bantime': 3600, 'ignore': []}."""
    spamtrap: Spamtrap = Field(default_factory=Spamtrap)
    """Spamtraps and the mail hosts' copy of their lists: {'source_ttl': 604800, 'max_sources': 10000,
    'reply': '451 4.7.1 ...', 'pull_interval': 60}."""
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

    @field_validator("resolver_insecure_domains", "ntp_servers", "resolver_forwarders", mode="before")
    @classmethod
    def _names(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"{_show(value)} is a string, not a list; write {info.field_name} = [{value!r}]")
        return value  # the entries are checked by their type (ServerName, ZoneOrLabel, Forwarder)

    # ---------------------------------------------------------------- cross-field checks

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
    def addresses(self) -> list[str]:
        return [str(a) for a in (self.ipv4, self.ipv6) if a is not None]
