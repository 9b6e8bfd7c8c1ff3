"""Provider adapters behind one interface (see base.py) and ``from_settings`` to build the configured one."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
from pathlib import Path
from typing import Any

from mailstead import secrets
from mailstead.dns.providers.base import Provider, ProviderError, printable_ascii


class CredentialError(Exception):
    pass


_MODE_HINT = "a credential file must be mode 0600 or stricter (no access for group and others)"


def _check_value(value: str, where: str) -> str:
    """``value`` if it looks like a token/key: printable ASCII, no whitespace, no control characters.
    The error names ``where`` and never shows the value."""
    if not value:
        raise CredentialError(f"{where} holds an empty secret")
    if not printable_ascii(value):
        raise CredentialError(f"{where}: the secret contains whitespace, control or non-ASCII characters "
                              "(value not shown); it must be the token/key alone on one line")
    return value


def _read_secret_file(path: Path) -> str:
    """The file's text, after checking that only its owner can read it (mode 0600 or stricter).
    Errors are raised outside the ``except`` blocks: a UnicodeDecodeError holds the file's bytes and must
    not ride along as the context of ours."""
    problem = None
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                problem = f"the DNS credential file {path} is not a regular file"
            elif st.st_mode & 0o077:
                problem = (f"the DNS credential file {path} is accessible to group/others (mode "
                           f"{stat.S_IMODE(st.st_mode):04o}): {_MODE_HINT}; run chmod 600 {shlex.quote(str(path))}")
            else:
                data = f.read()
    except OSError as exc:
        problem = f"cannot read the DNS credential file {path}: {exc.strerror}"
    if problem is None:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            problem = f"the DNS credential file {path} is not UTF-8 text (value not shown)"
    raise CredentialError(problem)


def read_secret(dns_settings: Any, secrets_dir: str | os.PathLike) -> str:
    """The credential the settings refer to: ``secret_file`` (relative to secrets_dir, or absolute) or the
    environment variable named by ``secret_env``. Never logged, never part of an error message.

    The file must be mode 0600 or stricter. It holds the token alone (one non-empty line), a JSON object
    (``{"secret": ...}``, or "key"/"token"/"api_key") or a BIND-style key file (``secret "...";``). The
    secret itself must be printable ASCII without whitespace (as is every API token and TSIG secret): a
    second line, a space or a control character is refused rather than sent in an HTTP header."""
    sf = getattr(dns_settings, "secret_file", None)
    se = getattr(dns_settings, "secret_env", None)
    if sf:
        path = secrets.credential_file(secrets_dir, sf)
        text = _read_secret_file(path)
        if text.lstrip().startswith("{"):  # JSON: {"secret": ...} (or "key"/"token")
            try:
                data = json.loads(text)
            except ValueError:  # raised below, outside this block: the JSON error (it holds the text) is
                data = None     # not chained to ours
            if data is None:
                raise CredentialError(f"{path}: not valid JSON (value not shown)")
            if not isinstance(data, dict):
                raise CredentialError(f"{path}: a JSON credential file must be an object with a secret field")
            for k in ("secret", "key", "token", "api_key"):
                if data.get(k):
                    if not isinstance(data[k], str):
                        raise CredentialError(f"{path}: the {k!r} field is not a string (value not shown)")
                    return _check_value(data[k].strip(), f"the DNS credential file {path}")
            raise CredentialError(f"{path}: JSON credential file without a secret/key/token field")
        m = re.search(r'secret\s+"([^"]+)"', text)
        if m:  # BIND-style key file
            return _check_value(m.group(1).strip(), f"the DNS credential file {path}")
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 1:
            raise CredentialError(f"the DNS credential file {path} has more than one non-empty line (value not "
                                  "shown); it must hold the token/key alone on one line")
        return _check_value(lines[0].strip() if lines else "", f"the DNS credential file {path}")
    if se:
        val = os.environ.get(se)
        if not val:
            raise CredentialError(f"the environment variable {se} (dns.secret_env) is not set")
        return _check_value(val.strip(), f"the environment variable {se} (dns.secret_env)")
    raise CredentialError("no DNS credential configured: set dns.secret_file or dns.secret_env")


def from_settings(dns_settings: Any, secrets_dir: str | os.PathLike) -> Provider | None:
    """The provider the settings name, or None for provider 'none'."""
    kind = getattr(dns_settings, "provider", "none")
    if kind == "none":
        return None
    secret = read_secret(dns_settings, secrets_dir)
    api_url = getattr(dns_settings, "api_url", None)
    if kind == "powerdns":
        from mailstead.dns.providers.powerdns import PowerDNS

        return PowerDNS(api_url, secret, server_id=getattr(dns_settings, "server_id", "localhost") or "localhost")
    if kind == "rfc2136":
        from mailstead.dns.providers.rfc2136 import RFC2136

        return RFC2136(dns_settings.server, dns_settings.tsig_key_name, secret,
                       algorithm=getattr(dns_settings, "tsig_algorithm", "hmac-sha256"),
                       port=getattr(dns_settings, "port", 53))
    if kind == "hetzner":
        from mailstead.dns.providers.hetzner import Hetzner

        return Hetzner(secret, **({"api_url": api_url} if api_url else {}))
    if kind == "cloudflare":
        from mailstead.dns.providers.cloudflare import Cloudflare

        return Cloudflare(secret, **({"api_url": api_url} if api_url else {}))
    if kind == "desec":
        from mailstead.dns.providers.desec import DeSEC

        return DeSEC(secret, **({"api_url": api_url} if api_url else {}))
    raise ValueError(f"unknown DNS provider {kind!r}")


__all__ = ["Provider", "ProviderError", "CredentialError", "from_settings", "read_secret"]
