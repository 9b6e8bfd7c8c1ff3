"""Settings of the brute-force protection (tasks/bruteforce.py): fail2ban with its nftables action."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from mailstead.settings.fields import network_list
from mailstead.settings.models import _Model


class BruteForce(_Model):
    """Repeated failed logins (SMTP AUTH on 465/587, IMAP 993/143, ManageSieve 4190, SSH) block their source
    address for a while: fail2ban reads the journal and bans through nftables (new connections refused)."""

    enabled: StrictBool = True
    """Run fail2ban. False stops and disables it (the package stays)."""
    maxretry: StrictInt = 5
    """Failed logins from one address within `findtime` that ban it."""
    findtime: StrictInt = 600
    """Seconds within which `maxretry` failures count."""
    bantime: StrictInt = 3600
    """Seconds an address stays banned."""
    ignore: list[StrictStr] = Field(default_factory=list)
    """Addresses or networks never banned, e.g. the deploy machine's ('192.0.2.7', '2001:db8::/48');
    loopback always is."""

    @field_validator("maxretry")
    @classmethod
    def _retry(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError(f"{value} is outside 1..1000; write bruteforce = {{'maxretry': 5}}")
        return value

    @field_validator("findtime", "bantime")
    @classmethod
    def _seconds(cls, value: int, info: Any) -> int:
        if not 5 <= value <= 365 * 86400:
            default = cls.model_fields[info.field_name].default
            raise ValueError(f"{value} is outside 5..31536000 seconds; write bruteforce = "
                             f"{{'{info.field_name}': {default}}}")
        return value

    @field_validator("ignore", mode="before")
    @classmethod
    def _ignore(cls, value: Any) -> Any:
        return network_list(value, "ignore", "bruteforce")
