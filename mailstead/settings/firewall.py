"""Settings of the host firewall (tasks/firewall.py): one nftables table of our own, ``inet mailstead``."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from mailstead.settings.errors import _CONTROL_RE, _show
from mailstead.settings.fields import network_list
from mailstead.settings.models import _Model

RULE_EXAMPLE = "write extra_input_rules = ['ip saddr 198.51.100.0/24 tcp dport 9100 accept']"


def nft_rule_problem(rule: str) -> str | None:
    """Why ``rule`` cannot be one rule line of the input chain (None when it can be). Only the shape is checked
    here (one line, no statement separator or comment, balanced braces); nft itself checks the syntax
    (``nft -c``) before the ruleset is loaded."""
    bad = _CONTROL_RE.search(rule)
    if bad or "\n" in rule or "\r" in rule:
        return "contains a line break or control character; give one rule per list entry"
    if not rule.strip():
        return "is empty"
    if ";" in rule or "#" in rule:
        return "contains ';' or '#' (they would end the rule or the chain); give one rule per list entry"
    depth = 0
    for ch in rule:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return "closes a brace it did not open"
    if depth:
        return "leaves a brace open"
    if len(rule) > 1000:
        return "is longer than 1000 characters"
    return None


class Firewall(_Model):
    """Inbound firewall of every host: default drop, open only the ports the host's roles serve (SSH first),
    loopback and established traffic allowed, per-source limits on the mail ports."""

    enabled: StrictBool = True
    """Load the firewall. False removes mailstead's nftables table (other tables are never touched)."""
    ssh_port: StrictInt = 22
    """SSH port the deploy connects to: its rule comes first, before every limit, so a deploy is never locked
    out."""
    new_per_minute: StrictInt = 120
    """New connections per minute one source address (IPv6: one /64) may open to the mail ports (25, 465, 587,
    993, 143, 4190); more are refused with a TCP reset."""
    burst: StrictInt = 40
    """New connections a source may open at once before `new_per_minute` applies."""
    max_per_source: StrictInt = 40
    """Connections one source address may hold open at a time on the mail ports; more are refused."""
    unmetered_sources: list[StrictStr] = Field(default_factory=list)
    """Networks whose connections skip the per-source limits (e.g. your monitoring, the lab's test clients):
    '192.0.2.7' or '2001:db8::/48'."""
    extra_input_rules: list[StrictStr] = Field(default_factory=list)
    """More nft rules for the input chain, one rule per entry, after the built-in ones (e.g.
    'ip saddr 198.51.100.0/24 tcp dport 9100 accept'); checked with `nft -c` before anything is loaded."""

    @field_validator("ssh_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"{value} is not a TCP port; write firewall = {{'ssh_port': 22}}")
        return value

    @field_validator("new_per_minute", "burst", "max_per_source")
    @classmethod
    def _limit(cls, value: int, info: Any) -> int:
        if not 1 <= value <= 100000:
            raise ValueError(f"{value} is outside 1..100000; write firewall = {{'{info.field_name}': "
                             f"{cls.model_fields[info.field_name].default}}}")
        return value

    @field_validator("unmetered_sources", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> Any:
        return network_list(value, "unmetered_sources", "firewall")

    @property
    def unmetered_v4(self) -> list[str]:
        return [n for n in self.unmetered_sources if ":" not in n]

    @property
    def unmetered_v6(self) -> list[str]:
        return [n for n in self.unmetered_sources if ":" in n]

    @field_validator("extra_input_rules", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"{_show(value)} is a string, not a list; write extra_input_rules = [{value!r}]")
        if isinstance(value, (list, tuple)):
            for i, rule in enumerate(value):
                if isinstance(rule, str):
                    problem = nft_rule_problem(rule)
                    if problem:
                        raise ValueError(f"extra_input_rules[{i}] = {_show(rule)} {problem}; {RULE_EXAMPLE}")
        return value
