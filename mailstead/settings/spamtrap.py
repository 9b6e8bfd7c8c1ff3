"""Settings of the spamtrap stage (tasks/spamtrap.py on the traps) and of the mail hosts' trap feed
(tasks/trapfeed.py)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import StrictInt, StrictStr, field_validator

from mailstead.settings.errors import _CONTROL_RE, _show
from mailstead.settings.models import _Model

_REPLY_RE = re.compile(r"4[0-9][0-9] 4\.[0-9]{1,3}\.[0-9]{1,3} [ -~]{1,200}")
REPLY_FIX = "write spamtrap = {'reply': '451 4.7.1 Service temporarily unavailable, try again later'}"


class Spamtrap(_Model):
    """Spamtraps: how long and how many sources they remember, what trap-last answers, how often the mail hosts
    fetch the list."""

    source_ttl: StrictInt = 7 * 86400
    """Seconds a source address stays listed after its last hit at a trap."""
    max_sources: StrictInt = 10000
    """Most source addresses a trap keeps (the least recent are forgotten first)."""
    reply: StrictStr = "451 4.7.1 Service temporarily unavailable, try again later"
    """trap-last's answer to RCPT TO and DATA: a 4xx with an enhanced status code (a real MTA that came because
    the real MX was down tries again later; nothing is ever accepted)."""
    pull_interval: StrictInt = 60
    """Mail hosts: seconds between two fetches of the traps' source lists."""

    @field_validator("source_ttl")
    @classmethod
    def _ttl(cls, value: int) -> int:
        if not 60 <= value <= 365 * 86400:
            raise ValueError(f"{value} is outside 60..31536000 seconds; write spamtrap = {{'source_ttl': 604800}}")
        return value

    @field_validator("max_sources")
    @classmethod
    def _max(cls, value: int) -> int:
        if not 1 <= value <= 1_000_000:
            raise ValueError(f"{value} is outside 1..1000000; write spamtrap = {{'max_sources': 10000}}")
        return value

    @field_validator("pull_interval")
    @classmethod
    def _interval(cls, value: int) -> int:
        if not 10 <= value <= 86400:
            raise ValueError(f"{value} is outside 10..86400 seconds; write spamtrap = {{'pull_interval': 60}}")
        return value

    @field_validator("reply", mode="before")
    @classmethod
    def _reply(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if _CONTROL_RE.search(value) or not _REPLY_RE.fullmatch(value) or any(c in value for c in '"\\|\''):
            raise ValueError(f"{_show(value)} is not a 4xx SMTP reply with an enhanced status code on one line "
                             f"(no quotes, backslashes or '|'); {REPLY_FIX}")
        return value
