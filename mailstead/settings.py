"""The settings model: one typed, validated, immutable view of a host's group_data.

Every value a task or template uses comes from here, never from raw ``host.data``.
``Settings.from_host(host)`` builds the model of one pyinfra host; ``mailstead.inventory.check``
builds and validates every host of an inventory before pyinfra connects to anything and names the
group_data file a bad value came from.

The README's settings reference is generated from the field docstrings below
(``settings_reference_markdown()``).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
import types
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, Callable, Literal, Mapping, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mailstead.passwords import COST as BCRYPT_COST
from mailstead.passwords import MIN_COST as BCRYPT_MIN_COST

try:  # A clean one-paragraph message from the pyinfra CLI, no traceback (see SettingsError).
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra_cli.exceptions import CliError
except ImportError:  # pragma: no cover - pyinfra is a hard dependency
    PyinfraError = Exception  # type: ignore[misc,assignment]
    CliError = Exception  # type: ignore[misc,assignment]

ROLES = ("mailservers", "spamtraps")
DNS_PROVIDERS = ("powerdns", "rfc2136", "hetzner", "cloudflare", "desec", "none")
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5")
HASH_SCHEMES = ("BLF-CRYPT", "ARGON2ID", "SHA512-CRYPT")
# The part after the {SCHEME} prefix; always matched with fullmatch (never re.match, whose $ matches before a
# trailing newline).
HASH_PATTERNS = {
    "BLF-CRYPT": re.compile(r"\$2[aby]\$(?P<cost>0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}"),
    "ARGON2ID": re.compile(r"\$argon2id\$v=19\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+"),
    "SHA512-CRYPT": re.compile(r"\$6\$(?:rounds=(?P<rounds>[0-9]{1,9})\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}"),
}
SHA512_MIN_ROUNDS = 5000  # glibc's default when a hash names no rounds
HASH_FIX = 'write password_hash = "<output of python -m mailstead hash-password>"'
DMARC_REMOVED_TAGS = {
    "pct": "DMARCbis (RFC 9989) removed pct; to test a policy write t = 'y' instead",
    "ri": "DMARCbis (RFC 9989) removed ri (the report interval); remove it",
    "rf": "DMARCbis (RFC 9989) removed rf (the failure report format); remove it",
}
DMARC_TAGS = ("p", "sp", "np", "adkim", "aspf", "rua", "ruf", "fo", "psd", "t")
# Keys that pyinfra (its connectors and global arguments) keeps in host data; not ours.
PYINFRA_KEY_PREFIXES = (
    "_", "ssh_", "winrm_", "docker_", "dockerssh_", "local_", "chroot_", "fake_", "terraform_",
    "vagrant_",
)
SECRETISH = re.compile(r"(token|secret|password|passwd|api_key|apikey|key_data|tsig_key$)", re.I)
ENVIRONMENT_WIDE_FIELDS = (
    "domains", "users", "aliases", "admin_email", "dns", "dnssec", "dns_ttl", "dmarc",
    "mta_sts_mode", "mta_sts_max_age", "tls_rpt_email", "dkim_rsa_bits", "secrets_dir",
)
# Every pattern below is used with fullmatch() only: re.match() with a trailing $ accepts "value\n".
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)+(?![0-9]+\Z)[a-z0-9-]{{2,63}}(?<!-)")
_HOSTNAME_RE = re.compile(rf"(?:{_LABEL}\.)*(?![0-9]+\Z){_LABEL}")  # also one label ('localhost'), for URLs
# Local parts: letters, digits and . _ + - only (never | / $ { } & # ' ...: OpenSMTPD runs '|cmd' and writes to
# '/file' targets); no leading '-' or '.', no trailing '.', no '..'.
_LOCALPART_RE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_+-]*(?:\.[A-Za-z0-9_+-]+)*")
LOCALPART_RULE = "letters, digits and . _ + - only, not starting with - or ., no .. and no trailing ."
_QUOTA_RE = re.compile(r"[1-9][0-9]{0,15}[KMGT]?")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_ENV_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_ENVVAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SUITE_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_VERSION_RE = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}(?:p[0-9]{1,4})?")
_SERVER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_TSIG_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?")
_PROFILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CONFIGURE_OPTION_RE = re.compile(r"--[a-z0-9][a-z0-9-]{0,63}(?:=[A-Za-z0-9_.,:/+=@%-]{0,400})?")
_DMARC_SIZE_RE = re.compile(r"[0-9]{1,15}[kmgt]?")
# scheme://host[:port][/path]: no user:password@, no ?query or #fragment, a conservative path alphabet
_URL_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
                     r"(?::(?P<port>[0-9]{1,5}))?(?P<path>/[A-Za-z0-9._~+,:@=/-]*)?")
# C0 controls, DEL, C1 controls (NEL U+0085 among them), LINE and PARAGRAPH SEPARATOR: never in a setting.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# --------------------------------------------------------------------------------------------
# Errors


@dataclass
class Issue:
    """One problem in the settings: where it came from, which field, what is wrong, the fix."""

    source: str  # 'group_data/production.py', 'host data of mx1.example.org in inventory.py', ...
    field: str  # 'users[1].password'
    message: str  # "a plaintext password is not allowed; write password_hash = ..."
    hosts: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.source}: {self.field}: {self.message}" if self.field else f"{self.source}: {self.message}"
        if self.hosts:
            text += f" (host{'s' if len(self.hosts) > 1 else ''} {', '.join(self.hosts)})"
        return one_line(text)


class SettingsError(CliError, PyinfraError):
    """Invalid settings. A pyinfra CLI error: printed as one clean message, exit status 1.

    It is both a ``PyinfraError`` (so pyinfra's ``exec_file`` re-raises it as-is when inventory.py
    raises it instead of wrapping it with a traceback) and a ``CliError`` (a click exception, so
    the CLI prints ``show()`` and exits non-zero before it connects to any host).
    """

    exit_code = 1

    def __init__(self, issues: list[Issue] | str, before_connect: bool = False):
        if isinstance(issues, str):
            issues = [Issue("settings", "", issues)]
        merged: dict[tuple[str, str, str], Issue] = {}
        for issue in issues:
            key = (issue.source, issue.field, issue.message)
            if key in merged:
                for h in issue.hosts:
                    if h not in merged[key].hosts:
                        merged[key].hosts.append(h)
            else:
                merged[key] = Issue(issue.source, issue.field, issue.message, list(issue.hosts))
        self.issues = list(merged.values())
        count = len(self.issues)
        head = f"{count} problem{'s' if count > 1 else ''}"
        head += " (nothing was deployed, no host was contacted):" if before_connect else ":"
        message = head + "".join(f"\n  {i.line()}" for i in self.issues)
        super().__init__(message)
        self.message = message
        self.args = (message,)

    def __str__(self) -> str:
        return self.message

    def show(self, file=None) -> None:  # click calls this, then exits with exit_code
        import sys

        import click

        click.echo(
            f"--> {click.style('Invalid mailstead settings', 'red', bold=True)}: {self.message}",
            file=file or sys.stderr,
        )


def one_line(text: str) -> str:
    """`text` with any control character escaped the way repr() does ('\\n'): one message is one line."""
    return _CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], text)


def _show(value: Any, limit: int = 70) -> str:
    """A value for a message: repr() (so a newline shows as \\n), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_url(value: Any, limit: int = 70) -> str:
    """Like _show, with a user:password@ part of a URL replaced by ***@ (a credential is never echoed)."""
    if isinstance(value, str) and "://" in value:
        scheme, _, rest = value.partition("://")
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            value = f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"
    return _show(value, limit)


def _py(value: Any) -> str:
    """A value as the user would write it in a group_data file."""
    if isinstance(value, (IPv4Address, IPv6Address)):
        return repr(str(value))
    if isinstance(value, BaseModel):
        return repr(value.model_dump(exclude_defaults=True))
    return repr(value)


# --------------------------------------------------------------------------------------------
# Syntax helpers


def is_domain(name: str) -> bool:
    return isinstance(name, str) and len(name) <= 253 and bool(_DOMAIN_RE.fullmatch(name))


def _norm_domain(value: Any) -> Any:
    """Lowercase, without surrounding spaces and one trailing dot. Only a plain ASCII string is touched (a
    control character is refused, never stripped; lower() could turn a non-ASCII letter into an ASCII one)."""
    if isinstance(value, str) and value.isascii() and not _CONTROL_RE.search(value):
        value = value.strip(" ").lower()
        return value[:-1] if value.endswith(".") else value
    return value


class _Bad(ValueError):
    """Why a value is refused. A message reads "<the value, repr-escaped> <this text>; write <the fix>"."""


def _plain(value: str) -> str:
    """`value` unless it holds a control character (newline, tab, NUL, DEL, C1, U+2028/U+2029)."""
    m = _CONTROL_RE.search(value)
    if m:
        raise _Bad(f"contains a control character ({m.group()!r}); a setting is one line of printable text")
    return value


def _dns_name_problem(name: str, what: str) -> str:
    if not name.isascii():
        first = next(c for c in name if not c.isascii())
        return (f"is not {what} (it has the non-ASCII character {ascii(first)}; write an internationalized name "
                "in its xn-- form)")
    if len(name) > 253:
        return f"is not {what} (longer than 253 characters)"
    if any(len(label) > 63 for label in name.split(".")):
        return f"is not {what} (a label is longer than 63 characters)"
    return f"is not {what}"


def _ip_literal(value: str) -> IPv4Address | IPv6Address | None:
    """The IP address `value` is (None if it is none); an IPv6 scope id (fe80::1%eth0) is refused."""
    try:
        addr = ip_address(value)
    except ValueError:
        return None
    if getattr(addr, "scope_id", None):
        raise _Bad("is an IPv6 address with a scope id (%...), which names an interface of one machine; "
                   "give the address without it")
    return addr


def _text(value: str) -> str:
    _plain(value)
    if not value.strip(" "):
        raise _Bad("is empty")
    return value


def _path(value: str) -> str:
    _text(value)
    if value != value.strip(" "):
        raise _Bad("starts or ends with a space")
    return value


def _domain(value: str) -> str:
    _plain(value)
    name = _norm_domain(value)
    if not is_domain(name):
        raise _Bad(_dns_name_problem(name, "a domain name"))
    return name


def _fqdn(value: str) -> str:
    _plain(value)
    name = _norm_domain(value)
    if not is_domain(name):
        raise _Bad(_dns_name_problem(name, "a fully qualified host name"))
    return name


def _host_or_ip(value: str) -> str:
    """A DNS host name or an IP address (no scope id)."""
    _plain(value)
    text = value.strip(" ")
    if _ip_literal(text) is not None:
        return text
    name = _norm_domain(text)
    if not is_domain(name):
        raise _Bad(_dns_name_problem(name, "a host name or IP address"))
    return name


def _domain_or_label(value: str) -> str:
    """A domain name or a single label such as the TLD 'test'."""
    _plain(value)
    name = _norm_domain(value)
    if not (is_domain(name) or re.fullmatch(_LABEL, name)):
        raise _Bad(_dns_name_problem(name, "a domain name"))
    return name


def _address(value: str) -> str:
    """local@domain: the local part in LOCALPART_RULE, the domain a domain name (lowercased)."""
    _plain(value)
    text = value.strip(" ")
    if text.count("@") != 1:
        raise _Bad("is not an email address (write local-part@domain)")
    local, domain = text.split("@")
    if not local:
        raise _Bad("is not an email address (nothing before the @)")
    if len(local) > 64 or not _LOCALPART_RE.fullmatch(local):
        raise _Bad(f"is not an email address this server accepts: its local part may have {LOCALPART_RULE} "
                   "(at most 64 characters)")
    name = _norm_domain(domain)
    if not is_domain(name):
        raise _Bad("is not an email address: after the @ " + _dns_name_problem(name, "a domain name"))
    return f"{local}@{name}"


def _alias_source(value: str) -> str:
    """An address, or '@domain' (catch-all)."""
    _plain(value)
    text = value.strip(" ")
    if text.startswith("@"):
        name = _norm_domain(text[1:])
        if not is_domain(name):
            raise _Bad("is not a catch-all: after the @ " + _dns_name_problem(name, "a domain name"))
        return "@" + name
    return _address(text)


def _pattern(regex: re.Pattern, problem: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        _plain(value)
        if not regex.fullmatch(value):
            raise _Bad(problem)
        return value

    return check


_env_name = _pattern(_ENV_RE, "is not an environment name (lowercase letters, digits and '-', at most 63)")
_suite = _pattern(_SUITE_RE, "is not a Debian suite name (lowercase letters, digits and '-', starting with a "
                             "letter, at most 32)")
_version = _pattern(_VERSION_RE, "is not an OpenSMTPD version (digits like 7.9.0 or 7.9.0p0)")
_server_id = _pattern(_SERVER_ID_RE, "is not a PowerDNS server id (letters, digits, '.', '_' and '-')")
_tsig_name = _pattern(_TSIG_NAME_RE, "is not a TSIG key name (dot-separated labels of letters, digits, '_' and '-')")
_profile = _pattern(_PROFILE_RE, "is not an ACME profile name (letters, digits, '.', '_' and '-')")
_configure_option = _pattern(
    _CONFIGURE_OPTION_RE,
    "is not a ./configure option: write '--name' or '--name=value' (a lowercase name; in the value only letters, "
    "digits and . _ , : / + = @ % -, never spaces, quotes or shell characters such as ; $ ` | &)")


def _forwarder(value: str) -> str:
    """An IP address, optionally with @port (Unbound's forward-addr syntax)."""
    _plain(value)
    addr, at, port = value.partition("@")
    if _ip_literal(addr) is None:
        raise _Bad("is not an IP address (or address@port)")
    if at and not (re.fullmatch(r"[0-9]{1,5}", port) and 0 < int(port) < 65536):
        raise _Bad("has no port number after the @ (write address or address@port)")
    return value


def _url(value: str, what: str, schemes: tuple[str, ...], need_path: bool = False) -> str:
    """scheme://host[:port][/path] with a scheme in `schemes`, a DNS name or IP literal as host, no
    user:password@, no query or fragment, a path of letters, digits and . _ ~ + , : @ = / - only."""
    _plain(value)
    if any(c.isspace() for c in value):
        raise _Bad(f"is not {what} (it contains whitespace)")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes:
        raise _Bad(f"is not {what}")
    if "@" in rest.split("/", 1)[0]:
        raise _Bad(f"is not {what}: it carries a user name or password (user:password@), which never belongs here")
    if "?" in value or "#" in value:
        raise _Bad(f"is not {what}: it has a query (?...) or a fragment (#...)")
    m = _URL_RE.fullmatch(value)
    if not m:
        raise _Bad(f"is not {what} (scheme://host[:port]/path with letters, digits and . _ ~ + , : @ = / - "
                   "in the path)")
    host = m["host"]
    if host.startswith("["):
        try:
            ok = isinstance(ip_address(host[1:-1]), IPv6Address)
        except ValueError:
            ok = False
    else:
        try:
            ok = ip_address(host).version == 4
        except ValueError:
            name = _norm_domain(host)
            ok = len(name) <= 253 and bool(_HOSTNAME_RE.fullmatch(name))
    if not ok:
        raise _Bad(f"is not {what}: {host!r} is not a host name or IP address")
    if m["port"] and not 0 < int(m["port"]) < 65536:
        raise _Bad(f"is not {what}: port {m['port']} is outside 1..65535")
    if need_path and not m["path"]:
        raise _Bad(f"is not {what}: it has no path (write the directory, e.g. .../debian)")
    return value


def _checked(check: Callable[[str], str], example: str, show: Callable[[Any], str] = _show) -> BeforeValidator:
    """The validator of a string type: `check` validates (and normalizes) the value. A refused value raises a
    'mailstead_value' error whose text is "<value, repr-escaped> <problem>"; `_issue_from_error` adds the fix
    (the field's own example, else `example`)."""

    def validate(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # pydantic reports the type
        try:
            return check(value)
        except _Bad as e:
            raise PydanticCustomError(
                "mailstead_value", "{text}", {"example": example, "text": f"{show(value)} {e}"}) from None

    return BeforeValidator(validate)


# Reusable string types: every free string of every model below is one of these (or has its own validator),
# full-match validated, without control characters. StrictStr: pydantic would otherwise turn bytes into a str
# after the check.
PlainText = Annotated[StrictStr, _checked(_text, "'...'")]
LocalPath = Annotated[StrictStr, _checked(_path, "'secrets/...'")]
DomainName = Annotated[StrictStr, _checked(_domain, "'example.org'")]
HostName = Annotated[StrictStr, _checked(_fqdn, "'mx1.example.org'")]
ServerName = Annotated[StrictStr, _checked(_host_or_ip, "'ns1.example.org'")]  # a host name or an IP address
ZoneOrLabel = Annotated[StrictStr, _checked(_domain_or_label, "'test'")]
Address = Annotated[StrictStr, _checked(_address, "'postmaster@example.org'")]
AliasSource = Annotated[StrictStr, _checked(_alias_source, "'info@example.org'")]  # an address or '@domain'
EnvironmentName = Annotated[StrictStr, _checked(_env_name, "'production'")]
SuiteName = Annotated[StrictStr, _checked(_suite, "'forky'")]
OpensmtpdVersion = Annotated[StrictStr, _checked(_version, "'7.9.0p0'")]
ServerId = Annotated[StrictStr, _checked(_server_id, "'localhost'")]
TsigKeyName = Annotated[StrictStr, _checked(_tsig_name, "'mailstead'")]
AcmeProfile = Annotated[StrictStr, _checked(_profile, "'tlsserver'")]
ConfigureOption = Annotated[StrictStr, _checked(_configure_option, "'--with-auth-pam=smtpd'")]
Forwarder = Annotated[StrictStr, _checked(_forwarder, "'198.51.100.1'")]
MirrorUrl = Annotated[StrictStr, _checked(
    lambda v: _url(v, "an http(s) mirror URI", ("http", "https"), need_path=True), "'http://mirror.example.org/debian'",
    show=_show_url)]
def _download_url(value: str) -> str:
    """https, or plain http to a loopback / documentation-range IP literal only (the providers' rule)."""
    from mailstead.dns.providers.urls import plain_http_allowed  # stdlib-only module

    what = "an https URL (plain http only to a loopback or documentation-range IP address)"
    _url(value, what, ("http", "https"))
    if value.lower().startswith("http://") and not plain_http_allowed(urlsplit(value).hostname):
        raise _Bad(f"is not {what}")
    return value


HttpsUrl = Annotated[StrictStr, _checked(_download_url, "'https://...'", show=_show_url)]
AcmeDirectoryUrl = Annotated[StrictStr, _checked(
    lambda v: _url(v, "an https URL (ACME servers use HTTPS, RFC 8555)", ("https",)),
    "'https://acme-v02.api.letsencrypt.org/directory'", show=_show_url)]


def split_address(address: Any) -> tuple[str, str] | None:
    """(local part, domain) of an acceptable address (domain lowercased); None if it is not one."""
    if not isinstance(address, str):
        return None
    try:
        local, _, domain = _address(address).rpartition("@")
    except _Bad:
        return None
    return local, domain


def quota_bytes(quota: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(quota[:-1]) * units[quota[-1]] if quota[-1] in units else int(quota)


# --------------------------------------------------------------------------------------------
# Sub-models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class User(_Model):
    """A mailbox. Its login is the address; aliases are set in the top-level ``aliases``."""

    address: Address
    """The mailbox address (login name), in one of `domains`; its local part may have letters, digits and
    . _ + - only."""
    password_hash: StrictStr
    """Dovecot scheme-prefixed strong hash: `{BLF-CRYPT}$2b$...`, `{ARGON2ID}$argon2id$...` or
    `{SHA512-CRYPT}$6$...`. Make one with `python -m mailstead hash-password`. Never a plaintext password."""
    quota: StrictStr | None = None
    """Mailbox quota such as '2G' or '500M' (units K, M, G, T); None = no quota."""

    @field_validator("password_hash", mode="before")
    @classmethod
    def _password_hash(cls, value: Any) -> Any:
        """Messages never show the value (it may be a password typed into the wrong key)."""
        if not isinstance(value, str):
            return value  # pydantic reports the type
        m = re.match(r"\{([A-Z0-9.-]+)\}", value)
        if not m:
            raise ValueError(
                "is not a Dovecot scheme-prefixed hash (a plaintext password? its value is not shown); "
                + HASH_FIX
            )
        if _CONTROL_RE.search(value) or any(c.isspace() for c in value):
            raise ValueError(
                "contains whitespace or a control character such as a trailing newline (its value is not shown); "
                "a hash is one word; " + HASH_FIX
            )
        scheme, rest = m.group(1), value[m.end():]
        if scheme not in HASH_PATTERNS:
            raise ValueError(
                f"unknown or weak hash scheme {{{scheme}}} (allowed: "
                + ", ".join("{%s}" % s for s in HASH_SCHEMES)
                + "); "
                + HASH_FIX
            )
        parts = HASH_PATTERNS[scheme].fullmatch(rest)
        if not parts:
            raise ValueError(f"is not a well-formed {{{scheme}}} hash (value not shown); " + HASH_FIX)
        weak = None
        if scheme == "BLF-CRYPT" and int(parts["cost"]) < BCRYPT_MIN_COST:
            weak = f"is a {{BLF-CRYPT}} hash of cost {parts['cost']}, below the minimum cost {BCRYPT_MIN_COST}"
        if scheme == "SHA512-CRYPT" and parts["rounds"] and int(parts["rounds"]) < SHA512_MIN_ROUNDS:
            weak = (f"is a {{SHA512-CRYPT}} hash of rounds={int(parts['rounds'])}, below the default "
                    f"{SHA512_MIN_ROUNDS}")
        if weak:
            raise ValueError(
                f"{weak} (value not shown): too cheap to guess; re-hash the password with `python -m mailstead "
                f"hash-password` (bcrypt, cost {BCRYPT_COST}) and " + HASH_FIX
            )
        return value

    @field_validator("quota", mode="before")
    @classmethod
    def _quota(cls, value: Any) -> Any:
        if value is None:
            return value
        plain = isinstance(value, str) and value.isascii() and not _CONTROL_RE.search(value)
        text = value.strip(" ").upper() if plain else value
        if isinstance(text, str) and text.endswith("B") and len(text) > 1 and text[-2] in "KMGT":
            text = text[:-1]
        if not plain or not _QUOTA_RE.fullmatch(text):
            raise ValueError(f"{_show(value)} is not a quota; write quota = '2G' (a number with K, M, G or T)")
        return text

    @property
    def local_part(self) -> str:
        return self.address.rsplit("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    @property
    def quota_bytes(self) -> int | None:
        return quota_bytes(self.quota) if self.quota else None


class DnsProvider(_Model):
    """Where the environment's DNS records are published. Credentials are references, never values."""

    provider: Literal["powerdns", "rfc2136", "hetzner", "cloudflare", "desec", "none"] = "none"
    """DNS provider adapter: powerdns, rfc2136, hetzner, cloudflare, desec, or none (print the records only)."""
    api_url: str | None = None
    """HTTP API base URL (required for powerdns, e.g. 'https://ns1.example.org:8081'; optional override for
    hetzner/cloudflare/desec). https only; plain http is accepted only to a loopback or documentation IP
    address (127.0.0.1, ::1, 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)."""
    server_id: ServerId = "localhost"
    """PowerDNS server id in the API path (/api/v1/servers/<server_id>)."""
    server: ServerName | None = None
    """Primary name server to send RFC 2136 updates to (rfc2136; host name or IP address)."""
    port: StrictInt = 53
    """Port of the RFC 2136 server."""
    tsig_key_name: TsigKeyName | None = None
    """TSIG key name (rfc2136)."""
    tsig_algorithm: StrictStr = "hmac-sha256"
    """TSIG algorithm (rfc2136)."""
    zone: DomainName | None = None
    """The zone that holds the records; None = each mail domain is its own zone."""
    secret_file: LocalPath | None = None
    """Credential reference: a file (relative to `secrets_dir`, or absolute; mode 0600) holding the API token
    / TSIG secret."""
    secret_env: StrictStr | None = None
    """Credential reference: the name of an environment variable holding the API token / TSIG secret."""

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from mailstead.dns.providers.urls import check_api_url  # the providers' rule (stdlib-only module)

        try:
            return check_api_url(value)
        except ValueError as exc:  # the message starts with the URL (credentials in it never shown)
            raise ValueError(f"{exc}; write api_url = 'https://ns1.example.org:8081'") from None

    @field_validator("tsig_algorithm")
    @classmethod
    def _tsig_alg(cls, value: str) -> str:
        if value.lower() not in TSIG_ALGORITHMS:
            raise ValueError(f"{_show(value)} is not a TSIG algorithm; write tsig_algorithm = 'hmac-sha256'")
        return value.lower()

    @field_validator("secret_file")
    @classmethod
    def _secret_file(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.strip() or (not value.startswith("/") and ".." in value.split("/"))
        ):
            raise ValueError(
                f"{_show(value)} must be a file name relative to secrets_dir (or an absolute path); "
                "write secret_file = 'dns-token'"
            )
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENVVAR_RE.fullmatch(value):
            raise ValueError(
                "is not an environment variable name (is it the secret itself? value not shown); "
                "write secret_env = 'MAILSTEAD_DNS_TOKEN'"
            )
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError(f"{value} is not a port number; write port = 53")
        return value

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_file or self.secret_env)


# provider -> (required fields, what to write)
DNS_REQUIRED = {
    "powerdns": [("api_url", "'https://ns1.example.org:8081'"), ("secret", None)],
    "rfc2136": [("server", "'ns1.example.org'"), ("tsig_key_name", "'mailstead'"), ("secret", None)],
    "hetzner": [("secret", None)],
    "cloudflare": [("secret", None)],
    "desec": [("secret", None)],
    "none": [],
}


class Tls(_Model):
    """How the mail hosts get their certificates."""

    mode: Literal["acme", "lab"] = "lab"
    """'lab' = certificates from a private CA kept in secrets_dir (lab-ca/); 'acme' = from an ACME CA
    (Let's Encrypt) — not available in this version yet: the settings check refuses it."""
    acme_directory: AcmeDirectoryUrl = "https://acme-v02.api.letsencrypt.org/directory"
    """ACME directory URL."""
    acme_email: Address | None = None
    """ACME account contact address; None = admin_email."""
    acme_ca_bundle: LocalPath | None = None
    """CA bundle that verifies the ACME server's TLS certificate (a lab pebble); None = system CAs."""
    acme_profile: AcmeProfile | None = None
    """ACME certificate profile to ask for (e.g. 'tlsserver'); None = the CA's default."""
    caa_issuer: DomainName = "letsencrypt.org"
    """Issuer domain published in the CAA records of every mail domain."""
    lab_ca_dir: LocalPath | None = None
    """Directory of the lab CA (lab only)."""


SIGNIFY_KEY_FIX = ("write signify_pubkey = 'keys/opensmtpd-20181026.pub' (a key file, relative to the project "
                   "directory) or the key's two lines 'untrusted comment: ...\\nRW...'")
PROJECT_DIR = Path(__file__).resolve().parent.parent


def signify_key_problem(text: str) -> str | None:
    """Why `text` is not a signify public key (None when it is one): a comment line 'untrusted comment: ...' and
    one base64 line of 42 bytes: 'Ed' (Ed25519), an 8-byte key number, the 32-byte key (signify(1))."""
    bad = _CONTROL_RE.search(text.replace("\r", "").replace("\n", ""))
    if bad:
        return f"it contains a control character ({bad.group()!r})"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 2 or not lines[0].startswith("untrusted comment: "):
        return "a signify public key has two lines: 'untrusted comment: ...' and the base64 key"
    try:
        raw = base64.b64decode(lines[1].strip(), validate=True)
    except (binascii.Error, ValueError):
        return "its second line is not base64"
    if len(raw) != 42 or raw[:2] != b"Ed":
        return "its second line is not an Ed25519 signify public key (42 bytes starting with 'Ed')"
    return None


class OpenSmtpd(_Model):
    """Where OpenSMTPD comes from. Debian 13 carries 7.6; mailstead builds a newer release from source."""

    source: Literal["debian-archive", "upstream", "package"] = "debian-archive"
    """'debian-archive' = the .orig tarball of a newer Debian suite (checked against the signed Sources
    index and `sha256`); 'upstream' = `upstream_url`, checked against `sha256` and/or upstream's signify
    signature (`signify_pubkey`); 'package' = trixie's package."""
    version: OpensmtpdVersion = "7.9.0p0"
    """OpenSMTPD version to build."""
    sha256: StrictStr | None = None
    """Expected sha256 of the source tarball (64 lowercase hex digits); required for 'upstream' unless
    `signify_pubkey` is set (then, if given, it must match too)."""
    debian_suite: SuiteName = "forky"
    """Debian suite whose Sources index provides the tarball (source = 'debian-archive')."""
    upstream_url: HttpsUrl | None = None
    """Tarball URL (source = 'upstream'; https only), e.g.
    'https://www.opensmtpd.org/archives/opensmtpd-7.9.0p0.tar.gz'."""
    signify_pubkey: StrictStr | None = None
    """source = 'upstream': the signify public key that signs upstream's releases, as the path of the .pub file on
    the deploy machine (relative to the project directory, or absolute) or as the key text (its two lines).
    The host then fetches the signed checksum list next to the tarball (`upstream_url` with `.tar.gz` replaced by
    `.sum.sig`, upstream's layout) and checks the tarball with Debian's `signify-openbsd -C` before building; a
    bad signature fails the deploy and nothing is built or installed. OpenSMTPD publishes its key as
    `opensmtpd-20181026.pub` in https://www.opensmtpd.org/archives/ (compare it out of band before you trust it)."""
    configure_options: list[ConfigureOption] = Field(default_factory=list)
    """Extra ./configure options, each '--name' or '--name=value' (no spaces, quotes or shell characters)."""

    @field_validator("sha256", mode="before")
    @classmethod
    def _sha(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.strip(" ").lower()
            if lowered.startswith("sha256:"):
                lowered = lowered[7:]
            if not _SHA256_RE.fullmatch(lowered):
                raise ValueError(
                    f"{_show(value)} is not a sha256 digest; write sha256 = '<64 hex digits from sha256sum>'"
                )
            return lowered
        return value

    @field_validator("signify_pubkey")
    @classmethod
    def _signify_pubkey(cls, value: str | None) -> str | None:
        if value is None:
            return value
        key_text = "\n" in value.strip() or value.lstrip().startswith("untrusted comment:")
        bad = _CONTROL_RE.search(value.replace("\n", "") if key_text else value)  # key text: lines, nothing else
        if bad:
            raise ValueError(f"{_show(value)} contains a control character ({bad.group()!r}); {SIGNIFY_KEY_FIX}")
        if key_text:
            problem = signify_key_problem(value)
            if problem:
                raise ValueError(f"{_show(value)} is not a signify public key: {problem}; {SIGNIFY_KEY_FIX}")
            return value
        path = Path(value).expanduser()
        path = path if path.is_absolute() else PROJECT_DIR / path
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{_show(value)}: cannot read the key file {path} ({e.__class__.__name__}); "
                             f"{SIGNIFY_KEY_FIX}") from None
        problem = signify_key_problem(text)
        if problem:
            raise ValueError(f"{_show(value)}: {path} is not a signify public key: {problem}; {SIGNIFY_KEY_FIX}")
        return value

    @model_validator(mode="after")
    def _upstream(self) -> "OpenSmtpd":
        if self.source == "upstream" and (not self.upstream_url or not (self.sha256 or self.signify_pubkey)):
            raise ValueError(
                "source = 'upstream' needs upstream_url and sha256 or signify_pubkey; write opensmtpd = "
                "{'source': 'upstream', 'upstream_url': 'https://.../opensmtpd-7.9.0p0.tar.gz', "
                "'signify_pubkey': 'keys/opensmtpd-20181026.pub'} (or 'sha256': '<64 hex digits>')"
            )
        if self.signify_pubkey and self.source != "upstream":
            raise ValueError(
                f"signify_pubkey is only used with source = 'upstream' (this is {self.source!r}); remove it or "
                "write 'source': 'upstream'"
            )
        if self.signify_pubkey and not (self.upstream_url or "").endswith(".tar.gz"):
            raise ValueError(
                f"upstream_url {_show(self.upstream_url)} does not end in .tar.gz, so the signed checksum list "
                "(<name>.sum.sig next to it) cannot be found; write upstream_url = "
                "'https://www.opensmtpd.org/archives/opensmtpd-7.9.0p0.tar.gz'"
            )
        return self

    def signify_key_text(self) -> str | None:
        """The signify public key's two lines (read from the file when `signify_pubkey` is a path)."""
        value = self.signify_pubkey
        if value is None:
            return None
        if "\n" not in value.strip() and not value.lstrip().startswith("untrusted comment:"):
            path = Path(value).expanduser()
            value = (path if path.is_absolute() else PROJECT_DIR / path).read_text()
        return "\n".join(line.strip() for line in value.strip().splitlines() if line.strip()) + "\n"

    @property
    def signify_sig_url(self) -> str | None:
        """Upstream's signed checksum list next to the tarball: opensmtpd-<version>.sum.sig."""
        if not self.signify_pubkey or not self.upstream_url:
            return None
        return self.upstream_url[: -len(".tar.gz")] + ".sum.sig"


DEFAULT_NTP = ["time.cloudflare.com", "nts.netnod.se", "ptbtime1.ptb.de"]


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
        order = [t for t in DMARC_TAGS if t in self.dmarc]
        return "; ".join(["v=DMARC1"] + [f"{t}={self.dmarc[t]}" for t in order])

    @property
    def addresses(self) -> list[str]:
        return [str(a) for a in (self.ipv4, self.ipv6) if a is not None]

    # ---------------------------------------------------------------- builders

    @classmethod
    def from_host(cls, host: Any) -> "Settings":
        """The settings of a pyinfra host (``host.name``, ``host.groups``, ``host.data``).

        Raises SettingsError naming the group_data file of a bad value."""
        data = host.data.dict()
        sources = _host_sources(host)
        return build_settings(host.name, list(host.groups), data, sources)


class _SemanticIssues(Exception):
    """Cross-field problems (raised through pydantic unchanged; not a ValueError)."""

    def __init__(self, issues: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {m}" for f, m in issues))
        self.issues = issues  # (field path, message)


def _ip_check(value: Any, family: int) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, (IPv4Address, IPv6Address)):
        addr = value
    elif isinstance(value, str):
        example = "198.51.100.10" if family == 4 else "2001:db8:51::10"
        try:
            addr = _ip_literal(_plain(value).strip(" "))
        except _Bad as e:
            raise ValueError(f"{_show(value)} {e}; write ipv{family} = '{example}'") from None
        if addr is None:
            raise ValueError(f"{_show(value)} is not an IP address; write ipv{family} = '{example}'")
    else:
        return value  # pydantic reports the type
    if addr.version != family:
        raise ValueError(
            f"{_show(value)} is an IPv{addr.version} address; write ipv{addr.version} = '{addr}' instead"
            f" (and ipv{family} = an IPv{family} address or None)"
        )
    return addr


def semantic_issues(s: Settings) -> list[tuple[str, str]]:
    """Cross-field problems of one host's settings: [(field path, message)]."""
    issues: list[tuple[str, str]] = []
    domains = set(s.domains)
    groups = set(s.groups)

    # roles and environment (only meaningful when built with the host's groups)
    if s.groups:
        if s.environment not in groups:
            issues.append((
                "environment",
                f"{s.environment!r} is not one of the host's inventory groups ({', '.join(s.groups)}); "
                f"add the host to the {s.environment!r} group in inventory.py or write environment = "
                + (repr(next(g for g in s.groups if g not in ROLES and g != 'all')) if any(
                    g not in ROLES and g != "all" for g in s.groups) else "'<its environment group>'"),
            ))
        if not s.roles:
            issues.append(("roles", "the host is in neither the mailservers nor the spamtraps group; "
                                    "add it to one of them in inventory.py"))
        if len(s.roles) > 1:
            issues.append(("roles", "the host is in both mailservers and spamtraps; "
                                    "put it in one of the two groups in inventory.py"))
    if s.tls.mode == "acme":
        issues.append(("tls.mode", "'acme' (Let's Encrypt) is not available in this version of mailstead yet; "
                                   "write tls = {'mode': 'lab'} (certificates from a private CA in secrets_dir) "
                                   "until it is"))
    if s.is_spamtrap and s.spamtrap_position is None:
        issues.append(("spamtrap_position", "a spamtraps host needs a position; write spamtrap_position = 'first' "
                                            "(MX 10, rejects connections) or 'last' (MX 30, defers) in its host data"))
    if s.spamtrap_position is not None and s.roles and not s.is_spamtrap:
        issues.append(("spamtrap_position", f"{s.spamtrap_position!r} is set on a host that is not in the spamtraps "
                                            "group; remove spamtrap_position (or add the host to spamtraps)"))
    if s.roles and s.ipv4 is None and s.ipv6 is None:
        issues.append(("ipv4", "the host has no address for its A/AAAA records; write ipv4 = '198.51.100.10' "
                               "(and/or ipv6) in its host data in inventory.py"))

    # users
    seen: dict[str, str] = {}
    for i, u in enumerate(s.users):
        where = f"users[{i}].address"
        if u.domain not in domains:
            issues.append((where, f"{u.address!r} is in domain {u.domain!r}, which is not in domains; "
                                  f"add {u.domain!r} to domains or write an address @{s.primary_domain}"))
        if u.address in seen:
            issues.append((where, f"{u.address!r} is defined twice (also {seen[u.address]}); keep one"))
        else:
            seen[u.address] = f"users[{i}]"

    # aliases
    for src, targets in s.aliases.items():
        where = f"aliases[{src!r}]"
        sdom = src.rsplit("@", 1)[1]
        if sdom not in domains:
            issues.append((where, f"source domain {sdom!r} is not in domains; add it to domains or use an address "
                                  f"@{s.primary_domain}"))
        if src in seen:
            issues.append((where, f"{src!r} is both a mailbox ({seen[src]}) and an alias; "
                                  "remove the alias or the mailbox"))
        for t in targets:
            tdom = t.rsplit("@", 1)[1]
            if tdom in domains and t not in seen and t not in s.aliases:
                issues.append((where, f"target {t!r} is a local address that is neither a mailbox nor an alias; "
                                      "add a user with that address or fix the target"))
    # alias loops (a -> b -> ... -> a), among pure aliases
    graph = {src: [t for t in targets if t in s.aliases] for src, targets in s.aliases.items()}
    reported: set[frozenset[str]] = set()
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, []):
                if nxt == start:
                    cyc = frozenset(path)
                    if cyc not in reported:
                        reported.add(cyc)
                        chain = " -> ".join(path + [start])
                        issues.append((f"aliases[{start!r}]", f"alias loop {chain}; make one of them deliver to a "
                                                              "mailbox or a remote address"))
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))

    # admin address must be deliverable if it is local
    adom = s.admin_email.rsplit("@", 1)[1]
    if s.users and adom in domains and s.admin_email not in seen and s.admin_email not in s.aliases:
        issues.append(("admin_email", f"{s.admin_email!r} is a local address that is neither a mailbox nor an "
                                      "alias, so reports to it would bounce; add a user or an alias for it"))
    for name, value in (("tls_rpt_email", s.tls_rpt_email), ("tls.acme_email", s.tls.acme_email)):
        if value and value != s.admin_email:
            d = value.rsplit("@", 1)[1]
            if s.users and d in domains and value not in seen and value not in s.aliases:
                issues.append((name, f"{value!r} is a local address that is neither a mailbox nor an alias; "
                                     "add a user or an alias for it"))

    # DNS provider fields
    for req, example in DNS_REQUIRED[s.dns.provider]:
        if req == "secret":
            if not s.dns.has_secret:
                issues.append(("dns.secret_file", f"provider {s.dns.provider!r} needs a credential reference; "
                                                  "write dns = {..., 'secret_file': 'dns-token'} (a file in "
                                                  f"{s.secrets_dir}/, mode 0600) or 'secret_env': "
                                                  "'MAILSTEAD_DNS_TOKEN'"))
        elif getattr(s.dns, req) is None:
            issues.append((f"dns.{req}", f"provider {s.dns.provider!r} needs {req}; write dns = "
                                         f"{{'provider': {s.dns.provider!r}, {req!r}: {example}, ...}}"))
    if s.dns.provider == "desec" and s.dns_ttl < 3600:
        issues.append(("dns_ttl", f"{s.dns_ttl} is below deSEC's minimum TTL; write dns_ttl = 3600"))
    if s.dns.secret_file and s.dns.secret_env:
        issues.append(("dns.secret_env", "give one credential reference, secret_file or secret_env, not both"))
    if s.dns.zone is not None:
        for d in s.domains:
            if d != s.dns.zone and not d.endswith("." + s.dns.zone):
                issues.append(("dns.zone", f"domain {d!r} is not inside zone {s.dns.zone!r}; remove zone "
                                           "(each domain is then its own zone) or fix it"))
    return issues


def ssh_lockout_issues(s: Settings, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``ssh_allow_root_keys = False`` while the deploy logs in as root (pyinfra's ``ssh_user`` unset or 'root'
    in the host's merged data): that deploy would end with sshd refusing root, so the next one could not log in.
    (pyinfra's ``--user`` option is not seen here: the inventory is checked before it applies; set ssh_user in
    the data instead.)"""
    if s.ssh_allow_root_keys:
        return []
    user = data.get("ssh_user")
    if user not in (None, "", "root"):
        return []
    how = "ssh_user = 'root'" if user == "root" else "ssh_user is not set"
    return [("ssh_allow_root_keys", f"False while the deploy logs in as root ({how}) locks the next deploy out "
                                    "(sshd would refuse root); write ssh_allow_root_keys = True, or log in as "
                                    "another user: ssh_user = 'deploy' and _sudo = True (a user with your SSH key "
                                    "and sudo on the host)")]


# --------------------------------------------------------------------------------------------
# Building from merged data with source attribution


def is_data_value(value: Any) -> bool:
    """Helpers (functions, classes, modules) in a group_data file are not settings."""
    return not isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type))


def is_pyinfra_key(key: str) -> bool:
    """pyinfra's own keys (connector data such as ssh_user, global arguments such as _sudo), which the settings
    leave alone; a setting of ours that shares a prefix (ssh_allow_root_keys) is not one of them."""
    return key.startswith(PYINFRA_KEY_PREFIXES) and key not in Settings.model_fields


def _host_sources(host: Any) -> dict[str, str]:
    """key -> where the value pyinfra gives this host comes from (highest precedence first)."""
    sources: dict[str, str] = {}
    inv = getattr(host, "inventory", None)
    if inv is None:
        return sources
    layers: list[tuple[str, Mapping]] = []
    try:
        layers.append(("the --data command-line option", inv.get_override_data() or {}))
        layers.append((f"host data of {host.name} in inventory.py", inv.get_host_data(host.name) or {}))
        for g in reversed(list(host.groups)):
            layers.append((f"group_data/{g}.py", inv.get_group_data(g) or {}))
        layers.append(("group_data/all.py", inv.get_data() or {}))
    except Exception:  # pragma: no cover - attribution is best effort
        return sources
    for label, data in layers:
        for key in data:
            sources.setdefault(key, label)
    return sources


_DERIVED_KEYS = {"roles", "groups"}
_PLAINTEXT_KEYS = ("password", "pass", "passwd", "plain_password", "cleartext", "plaintext")


def build_settings(name: str, groups: list[str], data: Mapping[str, Any], sources: Mapping[str, str]) -> Settings:
    """Validate one host's merged data; raise SettingsError with file attribution."""
    issues = collect_issues(name, groups, data, sources)
    if issues[0] is None:
        raise SettingsError(issues[1])
    return issues[0]


def collect_issues(
    name: str, groups: list[str], data: Mapping[str, Any], sources: Mapping[str, str]
) -> tuple[Settings | None, list[Issue]]:
    def src(key: str) -> str:
        host_keys = ("fqdn", "ipv4", "ipv6", "spamtrap_position")
        return sources.get(key, f"host data of {name} in inventory.py" if key in host_keys else "inventory.py")

    issues: list[Issue] = []
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or is_pyinfra_key(key) or not is_data_value(value):
            continue
        if key in _DERIVED_KEYS:
            issues.append(Issue(src(key), key, f"{key} come from the host's groups in inventory.py, not from "
                                               f"group_data; remove {key} and add the host to the mailservers "
                                               "or spamtraps group", [name]))
            continue
        clean[key] = value
    clean.setdefault("fqdn", name)
    clean["groups"] = tuple(groups)
    clean["roles"] = tuple(r for r in ROLES if r in groups)
    if issues:
        return None, issues
    try:
        settings = Settings.model_validate(clean)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        plaintext = {tuple(err["loc"][:-1]) for err in errors
                     if err.get("type") == "extra_forbidden" and err["loc"][-1] in _PLAINTEXT_KEYS}
        for err in errors:
            loc = tuple(err.get("loc", ()))
            if err.get("type") == "missing" and loc[-1:] == ("password_hash",) and loc[:-1] in plaintext:
                continue  # the plaintext-password message already says what to write
            issues.append(_issue_from_error(err, clean, src, name))
        return None, issues
    except _SemanticIssues as e:
        for path, msg in e.issues:
            top = re.split(r"[.\[]", path, maxsplit=1)[0]
            label = src(top)
            if top in ("roles",):
                label = "inventory.py"
            issues.append(Issue(label, path, msg, [name]))
        return None, issues
    lockout = ssh_lockout_issues(settings, data)  # needs pyinfra's connection keys, which the model drops
    if lockout:
        return None, [Issue(src(path), path, msg, [name]) for path, msg in lockout]
    return settings, []


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out and isinstance(part, str) and not part.isidentifier():
            out += f"[{part!r}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that owns the last key of loc."""
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if model is None or not hasattr(model, "model_fields") or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        model = {"users": User, "dns": DnsProvider, "tls": Tls, "opensmtpd": OpenSmtpd}.get(part)
        if model is None and isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    return model


_TYPE_WORDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "True or False",
    "bool_parsing": "True or False",
    "string_type": "a string in quotes",
    "list_type": "a list [...]",
    "dict_type": "a dict {...}",
    "tuple_type": "a list [...]",
    "model_type": "a dict {...}",
    "model_attributes_type": "a dict {...}",
    "literal_error": None,
    "missing": None,
    "too_short": None,
}


def _example(model: Any, key: str) -> str:
    if model is not None and key in getattr(model, "model_fields", {}):
        f = model.model_fields[key]
        if not f.is_required():
            default = f.get_default(call_default_factory=True)
            if default not in (None, [], {}, ()) and not isinstance(default, BaseModel):
                return _py(default)
    examples = {
        "environment": "'production'",
        "domains": "['example.org']",
        "admin_email": "'postmaster@example.org'",
        "address": "'alice@example.org'",
        "password_hash": '"<output of python -m mailstead hash-password>"',
        "ipv4": "'198.51.100.10'",
        "ipv6": "'2001:db8:51::10'",
        "quota": "'2G'",
        "spamtrap_position": "'first'",
        "users": "[{'address': 'alice@example.org', 'password_hash': '{BLF-CRYPT}$2b$12$...'}]",
        "aliases": "{'info@example.org': ['alice@example.org']}",
        "dns": "{'provider': 'powerdns', 'api_url': 'https://ns1.example.org:8081', 'secret_file': 'dns-token'}",
        "dmarc": "{'p': 'reject'}",
        "tls": "{'mode': 'acme'}",
        "opensmtpd": "{'source': 'debian-archive'}",
        "configure_options": "['--with-auth-pam=smtpd']",
        "apt_mirror": "'<mirror URI>' (e.g. 'http://mirror.example.org/debian'; or None)",
        "fqdn": "'mx1.example.org'",
        "tls_rpt_email": "'tlsrpt@example.org'",
        "acme_email": "'hostmaster@example.org'",
        "acme_profile": "'tlsserver'",
        "acme_ca_bundle": "'/etc/ssl/certs/ca-certificates.crt'",
        "lab_ca_dir": "'secrets/lab-ca'",
        "ntp_trusted_certs": "'/etc/ssl/certs/ca-certificates.crt'",
        "resolver_forwarders": "['198.51.100.1']",
        "resolver_insecure_domains": "['test']",
        "api_url": "'https://ns1.example.org:8081'",
        "server": "'ns1.example.org'",
        "tsig_key_name": "'mailstead'",
        "zone": "'example.org'",
        "secret_file": "'dns-token'",
        "secret_env": "'MAILSTEAD_DNS_TOKEN'",
        "upstream_url": "'https://www.opensmtpd.org/archives/opensmtpd-7.9.0p0.tar.gz'",
        "sha256": "'<64 hex digits from sha256sum>'",
    }
    return examples.get(key, "'...'")


def _value_fix(loc: tuple, model: Any, key: str, example: str) -> str:
    """The fix of a value its type refused: 'write key = <example>' (the field's own example, else the type's)."""
    if len(loc) >= 2 and isinstance(loc[-1], int):  # an entry of a list
        parent = str(loc[-2])
        return f"write each entry of {parent} as {_ELEMENT_EXAMPLES.get(parent, example)}"
    if key == "fqdn" and len(loc) == 1:
        return ("name the host 'mx1.example.org' in inventory.py (connect to an address with ssh_hostname) or "
                "write fqdn = 'mx1.example.org'")
    field_example = _example(model, key)
    return f"write {key} = {example if field_example == repr('...') else field_example}"


_ELEMENT_EXAMPLES = {
    "users": "{'address': 'alice@example.org', 'password_hash': \"<output of python -m mailstead hash-password>\"}",
    "domains": "'example.org'",
    "ntp_servers": "'time.cloudflare.com'",
    "resolver_forwarders": "'198.51.100.1'",
    "resolver_insecure_domains": "'test'",
    "configure_options": "'--with-auth-pam=smtpd'",
    "groups": "a group name",
}


def _issue_from_error(err: Mapping[str, Any], data: Mapping[str, Any], src: Any, host: str) -> Issue:
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    msg = err.get("msg", "")
    value = err.get("input")
    top = str(loc[0]) if loc else ""
    label = src(top) if top else "inventory.py"
    if top in ("groups", "roles"):
        label = "inventory.py"
    path = _field_path(loc)
    key = str(loc[-1]) if loc else ""
    model = _model_at(loc) if loc else Settings
    sub = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))

    if etype in ("value_error", "mailstead_value"):
        if etype == "value_error":
            text = re.sub(r"^Value error, ", "", msg)
        else:  # a value its type refused ("<value> <problem>"): add the field's fix
            ctx = err.get("ctx") or {}
            text = f"{ctx.get('text', msg)}; {_value_fix(loc, model, key, ctx.get('example', repr('...')))}"
        if top in ("ipv4", "ipv6", "fqdn") and "host data" not in label:
            text += " (per-host values belong in the host data in inventory.py)"
        return Issue(label, path, text, [host])

    if etype == "extra_forbidden":
        return Issue(label, path, _unknown_key_message(model, key, loc, value), [host])

    if etype == "missing":
        env = data.get("environment")
        env_groups = [g for g in data.get("groups", ()) if g not in ROLES and g not in ("all", "inventory")]
        if not isinstance(env, str) or not _ENV_RE.fullmatch(env):
            env = env_groups[0] if len(env_groups) == 1 else None
        env_file = f"group_data/{env}.py" if env else "group_data/<environment>.py"
        if key == "environment" and not loc[:-1]:
            if env:
                text = (f"is missing; write environment = {env!r} in {env_file} (the environment group of the "
                        "host in inventory.py)")
            else:
                text = ("is missing; write environment = '<name>' in group_data/<name>.py (e.g. production) and "
                        "put the host in that group in inventory.py")
            return Issue(env_file, "environment", text, [host])
        if key == "domains":
            text = f"is missing; write domains = ['example.org'] in {env_file}"
        elif key == "admin_email":
            text = "is missing; write admin_email = 'postmaster@example.org' (a mailbox or an alias)"
        else:
            text = f"is missing; write {key} = {_example(model, key)}"
        owner = sub.split(".")[0] if sub else ""
        return Issue(src(owner) if owner else env_file, path, text, [host])

    if etype == "too_short" and key == "domains":
        return Issue(label, path, "is empty; list at least one mail domain: domains = ['example.org']", [host])

    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        hint = ""
        if isinstance(value, str) and choices:
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
            if close:
                hint = f"did you mean {close[0]!r}? "
        if key == "provider":
            text = f"{_show(value)} is not a known DNS provider; {hint}write provider = one of {expected}"
        else:
            first = repr(choices[0]) if choices else "..."
            text = f"{_show(value)} is not allowed; {hint}write {key} = {first} (one of {expected})"
        return Issue(label, path, text, [host])

    word = _TYPE_WORDS.get(etype)
    if word is None and etype.endswith("_type"):
        word = etype[:-5].replace("_", " ")
    if word:
        shown = "(value not shown)" if key in ("password_hash",) or SECRETISH.search(key) else _show(value)
        parent = str(loc[-2]) if len(loc) >= 2 else ""
        if isinstance(loc[-1], int):  # an element of a list
            fix = f"write each entry of {parent} as {_ELEMENT_EXAMPLES.get(parent, _example(None, parent))}"
        elif parent in ("aliases", "dmarc") and len(loc) == 2:  # a value in a dict
            example = "['alice@example.org']" if parent == "aliases" else "'...'"
            fix = f"write {parent} = {{{key!r}: {example}}}"
        else:
            fix = f"write {key} = {_example(model, key)}"
        return Issue(label, path, f"{shown} is not {word}; {fix}", [host])
    return Issue(label, path, f"{_show(value)}: {msg}; write {key} = {_example(model, key)}", [host])


def _unknown_key_message(model: Any, key: str, loc: tuple, value: Any) -> str:
    names = list(getattr(model, "model_fields", {}).keys()) if model is not None else []
    names = [n for n in names if n not in _DERIVED_KEYS]
    if model is User and key in _PLAINTEXT_KEYS:
        return "a plaintext password is not allowed; " + HASH_FIX
    if model is User and key == "aliases":
        return ("users have no aliases key; write the top-level aliases = {'info@example.org': "
                "['alice@example.org']} instead")
    if model is DnsProvider and SECRETISH.search(key):
        return ("a secret written inline is not allowed (value not shown); put it in a file in secrets_dir "
                "(mode 0600) and write 'secret_file': 'dns-token', or export it and write 'secret_env': "
                "'MAILSTEAD_DNS_TOKEN'")
    if model in (Tls, OpenSmtpd) and SECRETISH.search(key):
        return ("secrets never belong in group_data (value not shown); keep them in files under secrets_dir "
                "(mode 0600) and remove this key")
    if model is Settings and SECRETISH.search(key):
        return ("unknown key, and secrets never belong in group_data (value not shown); keep secrets in files "
                "under secrets_dir and refer to them (e.g. dns = {..., 'secret_file': 'dns-token'})")
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if model is Settings and key in ("domain", "mail_domain", "mail_domains"):
        close = ["domains"]
    if close:
        target = model.model_fields[close[0]] if model is not None and close[0] in names else None
        shown = _show(value)
        if target is not None and isinstance(value, str) and "list" in str(target.annotation):
            shown = _show([value])
        return f"unknown key; did you mean {close[0]!r}? write {close[0]} = {shown}"
    return f"unknown key {key!r}; remove it (known keys: {', '.join(names)})"


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
        order = [t for t in DMARC_TAGS if t in self.dmarc]
        return "; ".join(["v=DMARC1"] + [f"{t}={self.dmarc[t]}" for t in order])

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


# --------------------------------------------------------------------------------------------
# README reference


def _without_annotated(annotation: Any) -> Any:
    """The annotation with every Annotated[T, ...] replaced by T (list[Address] -> list[str])."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _without_annotated(args[0])
    if not args or origin is Literal:
        return annotation
    plain = tuple(_without_annotated(a) for a in args)
    if plain == args:
        return annotation
    if origin in (Union, types.UnionType):
        return Union[plain]
    return origin[plain]


def _type_name(annotation: Any) -> str:
    annotation = _without_annotated(annotation)
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = re.sub(r"typing\.|ipaddress\.|mailstead\.settings\.|<class '|'>", "", text)
    text = text.replace("Annotated[int, Strict(strict=True)]", "int").replace(
        "Annotated[bool, Strict(strict=True)]", "bool")
    m = re.fullmatch(r"Optional\[(.*)\]", text)
    if m:
        text = m.group(1) + " | None"
    text = re.sub(r"Literal\[([^\]]*)\]", lambda mm: " | ".join(x.strip() for x in mm.group(1).split(",")), text)
    return text


def settings_reference_markdown() -> str:
    """The README's settings reference, generated from the field docstrings."""
    out = ["## Settings reference", "",
           "Keys of `group_data/*.py` (flat module variables) and of host data in `inventory.py`.",
           "Generated by `mailstead.settings.settings_reference_markdown()`.", ""]

    def table(model: type[BaseModel], prefix: str = "") -> None:
        out.append("| key | type | default | meaning |")
        out.append("|---|---|---|---|")
        for name, f in model.model_fields.items():
            if name in _DERIVED_KEYS and model is Settings:
                continue
            if f.is_required():
                default = "required"
            else:
                d = f.get_default(call_default_factory=True)
                default = "`" + _py(d).replace("|", "\\|") + "`"
                if isinstance(d, BaseModel):
                    default = "see below"
                elif model is Settings and name == "dmarc":
                    default = "see meaning"
            if model is Settings and name == "fqdn":
                default = "inventory name"
            doc = " ".join((f.description or "").split()).replace("|", "\\|")
            ty = _type_name(f.annotation).replace("|", "\\|")
            out.append(f"| `{prefix}{name}` | {ty} | {default} | {doc} |")
        out.append("")

    table(Settings)
    for title, model, prefix in (
        ("users[]", User, ""), ("dns", DnsProvider, "dns."), ("tls", Tls, "tls."),
        ("opensmtpd", OpenSmtpd, "opensmtpd."),
    ):
        out.append(f"### `{title}`")
        out.append("")
        if model.__doc__:
            out.append(" ".join(model.__doc__.split()))
            out.append("")
        table(model, prefix)
    out.append("Required DNS provider fields: " + "; ".join(
        f"{p}: " + (", ".join("secret_file or secret_env" if r == "secret" else r for r, _ in req) or "nothing")
        for p, req in DNS_REQUIRED.items()) + ".")
    out.append("")
    return "\n".join(out)
