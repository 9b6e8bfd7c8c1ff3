"""The spam filter's settings (`rspamd = {...}` in group_data): action thresholds, greylisting, DNS blocklists,
learning, spamtrap sources, and raw rspamd configuration for what mailstead does not model."""

from __future__ import annotations

import re
from ipaddress import ip_network
from typing import Any

from pydantic import Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from mailstead.settings.errors import _show
from mailstead.settings.fields import DomainName, _Bad, _plain
from mailstead.settings.models import _Model

# local.d files mailstead writes itself: raw configuration for them is refused (it would be overwritten)
MANAGED_LOCAL_FILES = (
    "actions.conf", "arc.conf", "classifier-bayes.conf", "dkim_signing.conf", "greylist.conf", "milter_headers.conf",
    "multimap.conf", "options.inc", "rbl.conf", "rbl_group.conf", "redis.conf", "worker-controller.inc",
)
_LOCAL_FILE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\.(?:conf|inc)")
Score = StrictFloat | StrictInt


def _network(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("is not an IP address or network in quotes")
    _plain(value)
    try:
        return str(ip_network(value.strip(" "), strict=False))
    except ValueError:
        raise _Bad("is not an IP address or network (write '198.51.100.7' or '198.51.100.0/24')") from None


class Rspamd(_Model):
    """Spam filtering with rspamd (every mail host): what happens at which score, greylisting, DNS blocklists
    (through the host's own Unbound), Bayes learning from the users' moves into and out of Junk."""

    reject_score: Score = 15
    """Score at or above which a message from the outside world is refused at SMTP (550)."""
    add_header_score: Score = 6
    """Score at or above which a message is marked as spam (X-Spam: yes) and filed into the user's Junk folder."""
    greylist_score: Score = 4
    """Score at or above which a never-seen sender first gets a temporary failure (451) and is accepted when it
    retries after `greylist_timeout`. Set it above `add_header_score` to greylist nothing below spam."""
    greylist_timeout: StrictInt = 300
    """Seconds a greylisted sender must wait before its retry is accepted (10 .. 3600)."""
    greylist_expire: StrictInt = 86400 * 3
    """Seconds rspamd remembers a greylisted triplet (3600 .. 2592000)."""
    greylist_whitelist: list[str] = Field(default_factory=list)
    """Client addresses or networks never greylisted, e.g. ['198.51.100.0/24']."""
    dnsbls: dict[DomainName, Score] = Field(default_factory=dict)
    """Extra DNS blocklists: zone -> score added when the client address is listed, e.g.
    {'bl.example.org': 8}. rspamd's own list (Spamhaus ZEN, Mailspike, ...) stays on; they are asked through
    the host's Unbound, never a public resolver (which Spamhaus refuses)."""
    autolearn: StrictBool = False
    """Let rspamd train Bayes on its own verdicts. Off: Bayes learns only from the users' moves into Junk
    (spam) and out of Junk to anything but Trash (ham)."""
    spamtrap_score: Score = 10
    """Score added to a message whose client address is in /var/lib/mailstead/spamtrap-sources.map (addresses
    that hit a spamtrap; filled by the trap stage). An empty or missing file adds nothing."""
    local_config: dict[str, str] = Field(default_factory=dict)
    """Raw rspamd configuration (UCL) for what mailstead does not model: local.d file name -> content, e.g.
    {'phishing.conf': 'openphish_enabled = true;'}. Checked with `rspamadm configtest` before it goes live; the
    files mailstead writes itself (actions.conf, dkim_signing.conf, ...) cannot be given here."""

    @field_validator("greylist_timeout")
    @classmethod
    def _timeout(cls, value: int) -> int:
        if not 10 <= value <= 3600:
            raise ValueError(f"{value} is outside 10..3600 seconds; write greylist_timeout = 300")
        return value

    @field_validator("greylist_expire")
    @classmethod
    def _expire(cls, value: int) -> int:
        if not 3600 <= value <= 2592000:
            raise ValueError(f"{value} is outside 3600..2592000 seconds; write greylist_expire = 259200")
        return value

    @field_validator("reject_score", "add_header_score", "greylist_score", "spamtrap_score")
    @classmethod
    def _score(cls, value: float, info: Any) -> float:
        if not -1000 <= value <= 1000:
            raise ValueError(f"{value} is outside -1000..1000; write {info.field_name} = "
                             f"{cls.model_fields[info.field_name].default}")
        return value

    @field_validator("dnsbls")
    @classmethod
    def _dnsbl_scores(cls, value: dict) -> dict:
        for zone, score in value.items():
            if not -1000 <= score <= 1000:
                raise ValueError(f"the score {score} of {zone} is outside -1000..1000; write dnsbls = {{{zone!r}: 8}}")
        return value

    @field_validator("greylist_whitelist", mode="before")
    @classmethod
    def _whitelist(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"{_show(value)} is a string, not a list; write greylist_whitelist = [{value!r}]")
        if isinstance(value, (list, tuple)):
            out = []
            for i, v in enumerate(value):
                try:
                    out.append(_network(v))
                except _Bad as e:
                    raise ValueError(f"greylist_whitelist[{i}] = {_show(v)} {e}; "
                                     "write greylist_whitelist = ['198.51.100.0/24']") from None
            return out
        return value

    @field_validator("local_config", mode="before")
    @classmethod
    def _local_config(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        fix = "write local_config = {'phishing.conf': 'openphish_enabled = true;'}"
        for name, text in value.items():
            if not isinstance(name, str) or not _LOCAL_FILE_RE.fullmatch(name):
                raise ValueError(f"{_show(name)} is not a local.d file name (lowercase letters, digits, _ and -, "
                                 f"ending in .conf or .inc); {fix}")
            if name in MANAGED_LOCAL_FILES:
                raise ValueError(f"{name} is written by mailstead from the other rspamd settings; use those, or "
                                 f"another file; {fix}")
            if not isinstance(text, str):
                raise ValueError(f"the content of {name} is not a string; {fix}")
            bad = re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
            if bad:
                raise ValueError(f"the content of {name} contains a control character ({bad.group()!r}); {fix}")
        return value

    @model_validator(mode="after")
    def _order(self) -> "Rspamd":
        if not self.add_header_score < self.reject_score:
            raise ValueError(f"add_header_score ({self.add_header_score}) must be below reject_score "
                             f"({self.reject_score}); write e.g. add_header_score = 6, reject_score = 15")
        return self
