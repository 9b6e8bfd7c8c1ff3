"""Field types and syntax helpers: constants, patterns, and the strict string types every model field uses
(full-match validated, no control characters)."""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated, Any, Callable
from urllib.parse import urlsplit

from pydantic import BeforeValidator, StrictStr
from pydantic_core import PydanticCustomError

from mailstead.policies import DMARC_TAGS  # noqa: F401 - the settings' own list of DMARC tags
from mailstead.settings.errors import _CONTROL_RE, _show, _show_url
from mailstead.urls import plain_http_allowed

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
# Keys that pyinfra (its connectors and global arguments) keeps in host data; not ours.
PYINFRA_KEY_PREFIXES = (
    "_", "ssh_", "winrm_", "docker_", "dockerssh_", "local_", "chroot_", "fake_", "terraform_",
    "vagrant_",
)
SECRETISH = re.compile(r"(token|secret|password|passwd|api_key|apikey|key_data|tsig_key$)", re.I)
ENVIRONMENT_WIDE_FIELDS = (
    "domains", "users", "aliases", "admin_email", "dns", "dnssec", "dns_ttl", "dmarc",
    "mta_sts_mode", "mta_sts_max_age", "tls_rpt_email", "dkim_rsa_bits", "secrets_dir", "password_hashes_file",
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

_DERIVED_KEYS = {"roles", "groups"}
_PLAINTEXT_KEYS = ("password", "pass", "passwd", "plain_password", "cleartext", "plaintext")


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


def _dns_name(what: str) -> Callable[[str], str]:
    """The check of a DNS name field ('a domain name', 'a fully qualified host name'): normalised, or _Bad."""

    def check(value: str) -> str:
        _plain(value)
        name = _norm_domain(value)
        if not is_domain(name):
            raise _Bad(_dns_name_problem(name, what))
        return name

    return check


_domain = _dns_name("a domain name")
_fqdn = _dns_name("a fully qualified host name")


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


def network_list(value: Any, key: str, setting: str) -> Any:
    """A list of IP addresses or networks ('192.0.2.7', '2001:db8::/48'), each normalised to its network
    ('192.0.2.7/32'); anything else is refused naming ``key`` and the fix (``setting = {'key': [...]}``). A value
    that is not a list of strings goes on to pydantic, which reports its type."""
    if isinstance(value, str):
        raise ValueError(f"{_show(value)} is a string, not a list; write {key} = [{value!r}]")
    if not isinstance(value, (list, tuple)) or not all(isinstance(net, str) for net in value):
        return value
    out = []
    for i, net in enumerate(value):
        try:
            if _CONTROL_RE.search(net) or net != net.strip():
                raise ValueError
            out.append(str(ipaddress.ip_network(net, strict=False)))
        except ValueError:
            raise ValueError(f"{key}[{i}] = {_show(net)} is not an IP address or network; write "
                             f"{setting} = {{'{key}': ['192.0.2.7', '2001:db8::/48']}}") from None
    return out
