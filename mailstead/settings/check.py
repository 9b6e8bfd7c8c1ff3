"""Settings of `python -m mailstead check` (the `check` key): which DNS blocklists to ask and when a finding
becomes a warning."""

from __future__ import annotations

from pydantic import Field, StrictInt, field_validator

from mailstead.settings.fields import DomainName
from mailstead.settings.models import _Model


class Check(_Model):
    """What `python -m mailstead check` looks at and when it warns."""

    dnsbl_zones: list[DomainName] = Field(default_factory=lambda: ["zen.spamhaus.org", "bl.spamcop.net"])
    """DNS blocklists the hosts' IPv4 addresses are looked up in (e.g. 'zen.spamhaus.org'); [] = none.
    Many lists refuse queries that come through public resolvers: check then warns that it could not ask."""
    cert_warn_days: StrictInt = 14
    """Warn when a served certificate expires in fewer days than this (1 .. 60); under 3 days is a problem."""
    queue_warn_messages: StrictInt = 50
    """Warn when a mail host's queue holds more messages than this (0 .. 1000000)."""
    queue_warn_hours: StrictInt = 24
    """Warn when the oldest queued message is older than this many hours (1 .. 720)."""
    disk_warn_percent: StrictInt = 85
    """Warn when the mail store's file system is fuller than this (50 .. 94 %); 95 % is a problem."""

    @field_validator("dnsbl_zones")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each blocklist once: write every zone of check.dnsbl_zones a single time")
        return value

    @field_validator("cert_warn_days")
    @classmethod
    def _days(cls, value: int) -> int:
        return _within(value, 1, 60, "check.cert_warn_days", "14")

    @field_validator("queue_warn_messages")
    @classmethod
    def _messages(cls, value: int) -> int:
        return _within(value, 0, 1_000_000, "check.queue_warn_messages", "50")

    @field_validator("queue_warn_hours")
    @classmethod
    def _hours(cls, value: int) -> int:
        return _within(value, 1, 720, "check.queue_warn_hours", "24")

    @field_validator("disk_warn_percent")
    @classmethod
    def _percent(cls, value: int) -> int:
        return _within(value, 50, 94, "check.disk_warn_percent", "85")


def _within(value: int, low: int, high: int, name: str, example: str) -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}; write e.g. {name.split('.')[1]} = {example}")
    return value
