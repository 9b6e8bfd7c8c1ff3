"""Plan (diff desired records against what the provider holds) and apply, touching only what mailstead owns.

Ownership rules
---------------
* An RRset mailstead computes is *owned fully* (its values are replaced by mailstead's), except the shared
  sets named by ``records.ownership``: at the apex, TXT (mailstead owns only the ``v=spf1`` value; a user's
  verification tokens stay) and CAA (mailstead owns only the issuer values it publishes). Foreign values
  in shared sets are carried over unchanged into every change.
* A name/type mailstead does not compute is never touched - with one exception: an RRset mailstead
  published earlier and no longer produces (a retired DKIM selector, a removed spamtrap, a host that
  lost its IPv6) is deleted, **if** the zone's state file says mailstead published it **and** the provider
  still holds exactly the values mailstead published. If someone changed it since, it is left alone and
  the plan says so.

Why a state file and not ownership markers in the zone: DNS has no per-RRset metadata that every provider
keeps (PowerDNS has comments, Cloudflare has comments/tags, deSEC and RFC 2136 have nothing), and TXT
marker records would have to shadow every owned name (a TXT next to an MX or SRV name pollutes it; at
``_dmarc`` or DKIM names a second TXT value breaks the record). The state file lives in the secrets
directory that is already backed up (it holds the DKIM keys), one JSON file per environment and zone:
``<secrets_dir>/dns/<environment>/<zone>.json``. Losing it is safe: mailstead then only fails to delete
stale records (it never deletes what it cannot prove it made).

Failure part-way: providers apply in as few calls as they can (PowerDNS, deSEC, Cloudflare and RFC 2136
in one call per zone; Hetzner per RRset). When a call fails, the state file is written as the union of
what was published before and what was about to be published, and the error names the record(s) and the
provider's message. The next run diffs against the provider again, so it completes what is missing; the
union keeps every possibly-published RRset marked as mailstead's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mailstead import secrets
from mailstead.dkim import PLACEHOLDER
from mailstead.dns.records import Ownership, Record, norm_name, ownership, value_key


@dataclass(frozen=True)
class Change:
    """One RRset-level change. ``new`` is the complete value set after the change (foreign values
    included for shared sets); empty for a delete. ``old`` is what the provider held."""

    action: str  # 'add' | 'change' | 'delete'
    name: str
    type: str
    ttl: int
    new: tuple[str, ...] = ()
    old: tuple[str, ...] = ()
    old_ttl: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)

    @property
    def record(self) -> Record:
        return Record(self.name, self.type, self.ttl, self.new)

    def describe(self) -> str:
        sym = {"add": "+", "change": "~", "delete": "-"}[self.action]
        head = f"{sym} {self.action:<6} {self.name} {self.type}"
        lines = []
        if self.action == "add":
            lines = [f"{head} ttl={self.ttl}"] + [f"      + {v}" for v in self.new]
        elif self.action == "delete":
            lines = [head] + [f"      - {v}" for v in self.old]
        else:
            ttl = f" ttl {self.old_ttl}->{self.ttl}" if self.old_ttl not in (None, self.ttl) else ""
            lines = [head + ttl]
            oldk = {value_key(self.type, v): v for v in self.old}
            newk = {value_key(self.type, v): v for v in self.new}
            lines += [f"      - {oldk[k]}" for k in oldk if k not in newk]
            lines += [f"      + {newk[k]}" for k in newk if k not in oldk]
            lines += [f"        {newk[k]}" for k in newk if k in oldk and self.type in ("TXT", "CAA")]
        return "\n".join(lines)


@dataclass
class ZonePlan:
    zone: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    desired: list[Record] = field(default_factory=list)  # what mailstead publishes in this zone
    state_path: Path | None = None
    previous_state: dict = field(default_factory=dict)


@dataclass
class Plan:
    provider: str
    zones: list[ZonePlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provider_obj: object = field(default=None, repr=False, compare=False)

    def apply(self) -> int:
        """Apply this plan with the provider it was made with (see ``apply``)."""
        if self.provider_obj is None:
            raise ValueError("this plan has no provider to apply it with")
        return apply(self, self.provider_obj)

    @property
    def changes(self) -> list[Change]:
        return [c for z in self.zones for c in z.changes]

    @property
    def empty(self) -> bool:
        return not self.changes

    def __len__(self) -> int:
        return len(self.changes)

    def render(self) -> str:
        out = []
        for z in self.zones:
            if z.changes:
                out.append(f"zone {z.zone} ({self.provider}): {len(z.changes)} change(s)")
                out += [c.describe() for c in z.changes]
            else:
                out.append(f"zone {z.zone} ({self.provider}): up to date")
            out += [f"  note: {n}" for n in z.notes]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    __str__ = render


class ApplyError(Exception):
    """A provider refused a change; ``records`` names the RRset(s), the message is the provider's."""

    def __init__(self, zone: str, records: Iterable[tuple[str, str]], message: str):
        self.zone = zone
        self.records = list(records)
        where = f" zone {zone}" if zone else ""
        names = ", ".join(f"{n} {t}" for n, t in self.records)
        super().__init__(f"DNS{where}{' (' + names + ')' if names else ''}: {message}")


# ------------------------------------------------------------------------------------------ state
def state_path(secrets_dir: str | os.PathLike, environment: str, zone: str) -> Path:
    return secrets.dns_state_file(secrets_dir, environment, norm_name(zone))


def load_state(path: Path | None) -> dict:
    """{(name, type): {"ttl": int, "values": [...], "shared": bool}}"""
    if path is None or not path.exists():
        return {}
    raw = json.loads(path.read_text())
    out = {}
    for k, v in raw.get("rrsets", {}).items():
        name, rtype = k.rsplit(" ", 1)
        out[(name, rtype)] = v
    return out


def save_state(path: Path | None, zone: str, state: dict) -> None:
    if path is None:
        return
    data = {"zone": zone, "rrsets": {f"{n} {t}": v for (n, t), v in sorted(state.items())}}
    secrets.write_private(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _state_of(desired: list[Record], own: Ownership) -> dict:
    return {
        r.key: {"ttl": r.ttl, "values": list(r.values), "shared": own.is_shared(r.key)} for r in desired
    }


# ------------------------------------------------------------------------------------------- zones
def zone_of(name: str, zones: Iterable[str]) -> str | None:
    """The longest managed zone that contains ``name``."""
    name = norm_name(name)
    best = None
    for z in zones:
        z = norm_name(z)
        if (name == z or name.endswith("." + z)) and (best is None or len(z) > len(best)):
            best = z
    return best


def split_by_zone(records: Iterable[Record], zones: Iterable[str]) -> tuple[dict[str, list[Record]], list[Record]]:
    zones = [norm_name(z) for z in zones]
    by_zone: dict[str, list[Record]] = {z: [] for z in zones}
    outside = []
    for r in records:
        z = zone_of(r.name, zones)
        (by_zone[z] if z else outside).append(r)
    return by_zone, outside


# ------------------------------------------------------------------------------------------- diff
def diff_zone(zone: str, desired: list[Record], current: list[Record], previous_state: dict | None = None) -> ZonePlan:
    """Changes that make the provider's ``current`` RRsets hold ``desired``, respecting ownership."""
    previous_state = previous_state or {}
    published_caa = [v for (n, t), s in previous_state.items() if t == "CAA" for v in s.get("values", [])]
    own = ownership(desired, published_caa=published_caa)
    cur = {r.key: r for r in current}
    zp = ZonePlan(zone=norm_name(zone), desired=list(desired), previous_state=previous_state)

    # A foreign CNAME where mailstead wants other data (e.g. autoconfig.D pointing at a hosting service):
    # a name with a CNAME can hold nothing else, and the CNAME is not ours to delete - skip that name.
    blocked = {n for (n, t) in cur if t == "CNAME" and (n, "CNAME") not in previous_state}
    for name in sorted(blocked & {r.name for r in desired if r.type != "CNAME"}):
        zp.notes.append(f"{name} has a CNAME that mailstead did not create; its "
                        + ", ".join(sorted(r.type for r in desired if r.name == name))
                        + " records are not published (remove the CNAME to let mailstead publish them)")
    desired = [r for r in desired if r.name not in blocked or r.type == "CNAME"]
    zp.desired = list(desired)

    for r in desired:
        c = cur.get(r.key)
        if c is None:
            zp.changes.append(Change("add", r.name, r.type, r.ttl, new=r.values))
            continue
        if own.is_shared(r.key):
            foreign = [v for v in c.values if not own.owns_value(r.key, v)]
            newvals = _merge(r.type, foreign, r.values)
            ttl = c.ttl  # a shared set keeps its owner's TTL
        else:
            newvals, ttl = r.values, r.ttl
        if _keys(r.type, newvals) != _keys(c.type, c.values) or ttl != c.ttl:
            zp.changes.append(Change("change", r.name, r.type, ttl, new=newvals, old=c.values, old_ttl=c.ttl))

    desired_keys = {r.key for r in desired}
    for key, st in sorted(previous_state.items()):
        if key in desired_keys:
            continue
        c = cur.get(key)
        if c is None:
            continue
        ours = {value_key(key[1], v) for v in st.get("values", [])}
        if st.get("shared"):
            remaining = tuple(v for v in c.values if value_key(c.type, v) not in ours)
            if len(remaining) == len(c.values):
                continue
            if remaining:
                zp.changes.append(Change("change", c.name, c.type, c.ttl, new=remaining, old=c.values, old_ttl=c.ttl))
            else:
                zp.changes.append(Change("delete", c.name, c.type, c.ttl, old=c.values, old_ttl=c.ttl))
        elif _keys(c.type, c.values) == ours:
            zp.changes.append(Change("delete", c.name, c.type, c.ttl, old=c.values, old_ttl=c.ttl))
        else:
            zp.notes.append(
                f"{c.name} {c.type}: mailstead no longer publishes it, but it was changed outside mailstead; left alone"
            )
    order = {"delete": 0, "change": 1, "add": 2}
    zp.changes.sort(key=lambda ch: (order[ch.action], ch.name, ch.type))
    return zp


def _keys(rtype: str, values: Iterable[str]) -> frozenset[str]:
    return frozenset(value_key(rtype, v) for v in values)


def _merge(rtype: str, foreign: Iterable[str], mine: Iterable[str]) -> tuple[str, ...]:
    seen, out = set(), []
    for v in list(foreign) + list(mine):
        k = value_key(rtype, v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return tuple(out)


def make_plan(provider, records: list[Record], zones: Iterable[str], secrets_dir: str | os.PathLike | None,
              environment: str) -> Plan:
    """Read every managed zone from ``provider`` and diff it against ``records``."""
    by_zone, outside = split_by_zone(records, zones)
    plan = Plan(provider=getattr(provider, "name", type(provider).__name__), provider_obj=provider)
    for r in outside:
        plan.notes.append(f"{r.name} {r.type} is in no managed zone ({', '.join(by_zone)}); publish it yourself: "
                          + "; ".join(r.lines()))
    min_ttl = int(getattr(provider, "min_ttl", 0) or 0)
    for zone, desired in by_zone.items():
        if min_ttl:
            desired = [Record(r.name, r.type, max(r.ttl, min_ttl), r.values) for r in desired]
        sp = state_path(secrets_dir, environment, zone) if secrets_dir is not None else None
        previous = load_state(sp)
        wanted = {r.key for r in desired} | set(previous)
        current = provider.list_records(zone, wanted=wanted)
        zp = diff_zone(zone, desired, current, previous)
        zp.state_path = sp
        plan.zones.append(zp)
    return plan


def apply(plan: Plan, provider) -> int:
    """Apply every zone's changes with ``provider.apply(zone, changes)``; returns the number of changes.

    An unchanged zone makes no write call. The state file of a zone is brought up to date even when
    nothing changed (so a run after an interrupted one records what the provider now holds).
    """
    dry = [f"{c.name} {c.type}" for c in plan.changes if any(PLACEHOLDER in v for v in c.new)]
    if dry:
        raise ValueError(f"a dry run's plan cannot be applied: {', '.join(dry)} hold(s) placeholder DKIM keys")
    done = 0
    for zp in plan.zones:
        own = ownership(zp.desired, published_caa=[v for (n, t), s in zp.previous_state.items() if t == "CAA"
                                                    for v in s.get("values", [])])
        new_state = _state_of(zp.desired, own)
        if zp.changes:
            try:
                provider.apply(zp.zone, zp.changes)
            except ApplyError:
                merged = dict(zp.previous_state)
                merged.update(new_state)
                save_state(zp.state_path, zp.zone, merged)
                raise
            except Exception as exc:
                merged = dict(zp.previous_state)
                merged.update(new_state)
                save_state(zp.state_path, zp.zone, merged)
                raise ApplyError(zp.zone, [c.key for c in zp.changes], str(exc)) from exc
            done += len(zp.changes)
        if zp.state_path is not None and load_state(zp.state_path) != _normalise(new_state):
            save_state(zp.state_path, zp.zone, new_state)
    return done


def _normalise(state: dict) -> dict:
    """The state as load_state() would read it back (JSON types)."""
    return {k: json.loads(json.dumps(v)) for k, v in state.items()}
