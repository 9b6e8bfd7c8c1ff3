"""Backup freshness of each mail host (over SSH, one login): the newest restic snapshot in the host's repository
(read with the host's own wrapper, so its credentials never leave it) and the last run of mailstead-backup.service,
against the interval of the timer's schedule.

  ok       a snapshot younger than ~2 intervals, the last run succeeded
  warning  the newest snapshot is older than 2 intervals (+ the timer's 30 min random delay), or the last run
           failed, or the timer is not active; or no snapshot yet on a backup set up less than 2 intervals ago
  problem  no snapshot at all (backups set up longer ago, or the last run failed), or the repository cannot be read
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from typing import Iterable

from mailstead.check.findings import Context, Finding, Target, ok, problem, warning
from mailstead.check.hostcheck import run_remote

CHECK = "backup"
# mailstead.backup.RESTIC (not imported: mailstead.backup imports mailstead.check; a unit test keeps them equal)
RESTIC = "/usr/local/sbin/mailstead-restic"
SLACK = 3600  # the timer's RandomizedDelaySec (30 min) and a run's own duration
TIMER_UNIT = "/etc/systemd/system/mailstead-backup.timer"
SEP = "--mailstead-backup-check--"
RESTIC_WAIT = 45  # seconds; restic retries for many minutes when the repository host errs (a missing S3 bucket)
_STAMP_RE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def script(fqdn: str, schedule: str) -> str:
    """What the check runs on the host (schedule: validated OnCalendar text, no quotes possible)."""
    return f"""export TZ=UTC
err=$(mktemp); trap 'rm -f "$err"' EXIT
if [ -x {RESTIC} ]; then timeout {RESTIC_WAIT} {RESTIC} snapshots --json --no-lock --host {fqdn} --tag mailstead 2>"$err"; rc=$?
  echo; echo "rc=$rc"; tail -n 3 "$err"
else echo no-restic; fi
echo {SEP}
systemctl show mailstead-backup.service -p Result -p ExecMainStartTimestamp
systemctl show mailstead-backup.timer -p ActiveState
echo {SEP}
stat -c %Y {TIMER_UNIT} 2>/dev/null || echo 0
date +%s
echo {SEP}
systemd-analyze calendar --iterations=8 '{schedule}' 2>&1
"""


@dataclass
class BackupState:
    """What the host said: snapshot times (None: the repository could not be read, error says why), the last
    run of the service, whether the timer is active, when the backup was set up, the schedule's interval."""

    snapshots: list[_dt.datetime] | None
    error: str
    last_result: str
    last_start: _dt.datetime | None
    timer_active: bool
    set_up: _dt.datetime | None
    now: _dt.datetime
    interval: float | None  # seconds


def _utc(text: str) -> _dt.datetime | None:
    m = _STAMP_RE.search(text or "")
    return _dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=_dt.timezone.utc) if m else None


def snapshot_time(value: str) -> _dt.datetime:
    """restic's snapshot time ('2026-11-29T08:14:13.123456789+00:00', nanoseconds) as a datetime."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if not m:
        raise ValueError(f"cannot read the snapshot time {value!r}")
    return _dt.datetime.fromisoformat(m.group(1) + m.group(2).replace("Z", "+00:00"))


def interval_of(calendar_output: str) -> float | None:
    """The longest gap between the schedule's next elapses (`systemd-analyze calendar --iterations=N`)."""
    times = [_utc(line) for line in calendar_output.splitlines()
             if re.match(r"\s*(Next elapse|Iter(ation|\.) #\d+):", line)]
    times = [t for t in times if t]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    return max(gaps) if gaps else None


def parse_state(text: str) -> BackupState:
    parts = text.split(SEP + "\n")
    parts += [""] * (4 - len(parts))
    snaps_text, units, stamps, calendar = parts[:4]
    snapshots: list[_dt.datetime] | None = None
    error = ""
    m = re.search(r"^rc=(\d+)$", snaps_text, re.M)
    body, rc, stderr = (snaps_text[:m.start()], m.group(1), snaps_text[m.end():]) if m else (snaps_text, "", "")
    if snaps_text.strip() == "no-restic":
        error = f"{RESTIC} is missing (deploy the host)"
    elif rc.strip() == "0":
        try:
            snapshots = [snapshot_time(s["time"]) for s in json.loads(body.strip() or "[]")]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            error = f"cannot read restic's answer: {exc}"
    elif rc.strip() == "124":
        error = (f"restic got no answer within {RESTIC_WAIT} s (it retries while the repository host errs, "
                 "e.g. an S3 bucket that does not exist yet)")
    elif rc.strip() == "10" or "repository does not exist" in stderr:
        snapshots = []  # never initialised: the first backup run creates it
    else:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        msg = lines[-1] if lines else f"restic exited with {rc.strip() or '?'}"
        try:
            msg = json.loads(msg).get("message", msg)
        except (ValueError, AttributeError):
            pass
        error = msg[:240]
    props = dict(line.split("=", 1) for line in units.splitlines() if "=" in line)
    nums = [int(x) for x in stamps.split() if x.isdigit()]
    now = _dt.datetime.fromtimestamp(nums[1], _dt.timezone.utc) if len(nums) > 1 else _dt.datetime.now(_dt.timezone.utc)
    set_up = _dt.datetime.fromtimestamp(nums[0], _dt.timezone.utc) if nums and nums[0] else None
    return BackupState(snapshots, error, props.get("Result", ""), _utc(props.get("ExecMainStartTimestamp", "")),
                       props.get("ActiveState") == "active", set_up, now, interval_of(calendar))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds < 72 * 3600 else f"{seconds / 86400:.1f} days"


def freshness(fqdn: str, s: BackupState) -> Finding:
    """ok / warning / problem for one host's backups (see the module's docstring)."""
    now_cmd = f"python -m mailstead backup now --host {fqdn}"
    failed = bool(s.last_start) and s.last_result not in ("", "success")
    ran = f"the last run (started {s.last_start:%Y-%m-%d %H:%M} UTC) failed: {s.last_result}" if failed else ""
    journal = f"read `journalctl -u mailstead-backup.service` on {fqdn}, fix the cause, then run `{now_cmd}`"
    if s.snapshots is None:
        return problem(CHECK, fqdn, f"cannot read the backup repository: {s.error}" + (f"; {ran}" if ran else ""),
                       "check that the repository host answers and accepts this host's key or credentials "
                       f"(secrets_dir/backup/), then run `{now_cmd}`")
    limit = 2 * s.interval + SLACK if s.interval else 2 * 86400 + SLACK
    every = f"the timer runs every {_hours(s.interval)}" if s.interval else "cannot read the timer's interval"
    if not s.snapshots:
        age = (s.now - s.set_up).total_seconds() if s.set_up else None
        if failed:
            return problem(CHECK, fqdn, f"no backup snapshot at all; {ran}", journal)
        if age is not None and age < limit:
            return warning(CHECK, fqdn, f"no backup snapshot yet: backups were set up {_hours(age)} ago and "
                           f"{every}", f"run `{now_cmd}` (or wait for the timer's first run)")
        return problem(CHECK, fqdn, "no backup snapshot at all although backups are on"
                       + (f" since {_hours(age)}" if age is not None else ""), f"run `{now_cmd}`; if it fails, "
                       f"read `journalctl -u mailstead-backup.service` on {fqdn}")
    newest = max(s.snapshots)
    age = (s.now - newest).total_seconds()
    seen = f"newest of {len(s.snapshots)} snapshot(s) {_hours(max(age, 0))} old; {every}"
    if failed:
        return warning(CHECK, fqdn, f"{ran}; {seen}", journal)
    if age > limit:
        return warning(CHECK, fqdn, f"backups are late: {seen}", f"check `systemctl list-timers "
                       f"mailstead-backup.timer` on {fqdn} and run `{now_cmd}`")
    if not s.timer_active:
        return warning(CHECK, fqdn, f"mailstead-backup.timer is not active; {seen}",
                       f"deploy the host again or `systemctl enable --now mailstead-backup.timer` on {fqdn}")
    return ok(CHECK, fqdn, seen)


def backup_freshness(ctx: Context, t: Target) -> Iterable[Finding]:
    b = t.settings.backup
    if not b.repository:
        yield ok(CHECK, t.fqdn, "backups are off (backup.repository is not set)")
        return
    proc = run_remote(t, script(t.fqdn, b.schedule), timeout=ctx.timeout * 12)
    yield freshness(t.fqdn, parse_state(proc.stdout))
