"""Provider adapters behind one interface (see base.py) and ``from_settings`` to build the configured one."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mailstead.dns.providers.base import Provider, ProviderError


class CredentialError(Exception):
    pass


def read_secret(dns_settings: Any, secrets_dir: str | os.PathLike) -> str:
    """The credential the settings refer to: ``secret_file`` (relative to secrets_dir, or absolute) or the
    environment variable named by ``secret_env``. Never logged. A BIND-style key file (``secret "...";``)
    yields its secret."""
    sf = getattr(dns_settings, "secret_file", None)
    se = getattr(dns_settings, "secret_env", None)
    if sf:
        from mailstead.dkim import secrets_root

        path = Path(sf) if os.path.isabs(sf) else secrets_root(secrets_dir) / sf
        try:
            text = path.read_text()
        except OSError as exc:
            raise CredentialError(f"cannot read the DNS credential file {path}: {exc.strerror}") from None
        if text.lstrip().startswith("{"):  # JSON: {"secret": ...} (or "key"/"token")
            import json

            data = json.loads(text)
            for k in ("secret", "key", "token", "api_key"):
                if data.get(k):
                    return str(data[k]).strip()
            raise CredentialError(f"{path}: JSON credential file without a secret/key/token field")
        m = re.search(r'secret\s+"([^"]+)"', text)
        return (m.group(1) if m else text).strip()
    if se:
        val = os.environ.get(se)
        if not val:
            raise CredentialError(f"the environment variable {se} (dns.secret_env) is not set")
        return val.strip()
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
