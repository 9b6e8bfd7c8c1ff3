"""The sub-models of a host's settings: users, the DNS provider, TLS, OpenSMTPD's source."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from mailstead import PROJECT_DIR
from mailstead.passwords import COST as BCRYPT_COST
from mailstead.passwords import MIN_COST as BCRYPT_MIN_COST
from mailstead.settings.errors import _CONTROL_RE, _show
from mailstead.settings.fields import (
    _ENVVAR_RE,
    _QUOTA_RE,
    _SHA256_RE,
    HASH_FIX,
    HASH_PATTERNS,
    HASH_SCHEMES,
    SHA512_MIN_ROUNDS,
    TSIG_ALGORITHMS,
    AcmeDirectoryUrl,
    AcmeProfile,
    Address,
    ConfigureOption,
    DomainName,
    HttpsUrl,
    LocalPath,
    OpensmtpdVersion,
    ServerId,
    ServerName,
    SuiteName,
    TsigKeyName,
    quota_bytes,
)
from mailstead.urls import check_api_url

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


LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


class Tls(_Model):
    """How the mail hosts get their certificates."""

    mode: Literal["acme", "lab"] = "acme"
    """'acme' = from an ACME CA (Let's Encrypt by default): the host's own client (mailstead-acme.timer, twice
    a day) issues and renews it, the first one during the deploy; 'lab' = from a private CA kept in secrets_dir
    (lab-ca/), for offline use (senders and clients do not trust it)."""
    acme_directory: AcmeDirectoryUrl = LETSENCRYPT_PRODUCTION
    """ACME directory URL: Let's Encrypt production; its staging CA (not trusted by anyone, for trials) is
    'https://acme-staging-v02.api.letsencrypt.org/directory'."""
    acme_email: Address | None = None
    """ACME account contact address; None = admin_email."""
    acme_ca_bundle: LocalPath | None = None
    """CA bundle (a file on the deploy machine) that verifies the ACME server's own HTTPS certificate (a lab
    CA); None = the host's system CAs."""
    acme_profile: AcmeProfile | None = None
    """ACME certificate profile to ask for (e.g. 'tlsserver', Let's Encrypt's 45-day profile); None = the CA's
    default."""
    acme_challenge: Literal["http-01", "dns-01"] = "http-01"
    """How the CA checks the names: 'http-01' = a file served by nginx on port 80 (port 80 must be reachable
    from the internet); 'dns-01' = TXT records published through the environment's DNS provider (`dns`), for
    hosts without port 80 — the provider's credential is then installed on the host (root only)."""
    trusted_by_senders: StrictBool = False
    """The certificates' CA is trusted by every sender and client that matters although it is not a public CA
    (a private CA, or an ACME CA given with acme_ca_bundle): true only in a closed test network such as the
    lab. Needed to combine such a CA with mta_sts_mode = 'enforce'."""
    caa_issuer: DomainName = "letsencrypt.org"
    """Issuer domain published in the CAA records of every mail domain."""
    lab_ca_dir: LocalPath | None = None
    """Directory of the private CA (mode 'lab'); None = <secrets_dir>/lab-ca."""

    @property
    def publicly_trusted(self) -> bool:
        """The certificates chain to a CA that senders trust without being told (mode 'acme' with a public
        directory and no private CA bundle, and not Let's Encrypt's staging CA)."""
        return (self.mode == "acme" and self.acme_ca_bundle is None
                and self.acme_directory != LETSENCRYPT_STAGING)


SIGNIFY_KEY_FIX = ("write signify_pubkey = 'keys/opensmtpd-20181026.pub' (a key file, relative to the project "
                   "directory) or the key's two lines 'untrusted comment: ...\\nRW...'")


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
