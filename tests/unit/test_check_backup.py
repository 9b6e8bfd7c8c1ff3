"""`check`'s backup freshness: what the host's answer (restic snapshots --json, systemctl show, systemd-analyze
calendar; formats as captured on a lab host) means: ok / warning / problem, each with what to do."""

from __future__ import annotations

import datetime as dt

import pytest

from mailstead import backup
from mailstead.check import backupcheck
from mailstead.check.backupcheck import SEP
from mailstead.check.findings import OK, PROBLEM, WARNING

NOW = 1795940156  # 2026-11-29 08:15:56 UTC
CALENDAR_DAILY = """  Original form: daily
Normalized form: *-*-* 00:00:00
    Next elapse: Mon 2026-11-30 00:00:00 UTC
       From now: 15h left
   Iteration #2: Tue 2026-12-01 00:00:00 UTC
       From now: 1 day 15h left
   Iteration #3: Wed 2026-12-02 00:00:00 UTC
       From now: 2 days left
"""
CALENDAR_WEEKDAYS = """  Original form: Mon..Fri 03:00
Normalized form: Mon..Fri *-*-* 03:00:00
    Next elapse: Thu 2026-12-03 03:00:00 UTC
   Iteration #2: Fri 2026-12-04 03:00:00 UTC
   Iteration #3: Mon 2026-12-07 03:00:00 UTC
"""
AUTH_ERROR = ('{"message_type":"exit_error","code":1,"message":"Fatal: unable to open repository at '
              'sftp:restic@infra.lab.test:/srv/restic/mail.production.test: unable to start the sftp session"}')
NO_REPO = ('{"message_type":"exit_error","code":10,"message":"Fatal: repository does not exist: unable to open '
           'config file: stat /srv/restic/mx/config: no such file or directory\\nIs there a repository at the '
           'following location?"}')


def snapshot(hours_ago: float) -> str:
    t = dt.datetime.fromtimestamp(NOW - hours_ago * 3600, dt.timezone.utc)
    return ('{"time":"%s.123456789+00:00","tree":"ab","paths":["/var/spool/smtpd","/var/vmail"],'
            '"hostname":"mx","username":"root","tags":["mailstead"],"id":"cd","short_id":"cd"}'
            % t.strftime("%Y-%m-%dT%H:%M:%S"))


def answer(snaps: str = "[]", rc: int = 0, err: str = "", result: str = "success", started: str = "",
           timer: str = "active", set_up_hours_ago: float = 100, calendar: str = CALENDAR_DAILY) -> str:
    return (f"{snaps}\n\nrc={rc}\n{err}\n{SEP}\nResult={result}\nExecMainStartTimestamp={started}\n"
            f"ActiveState={timer}\n{SEP}\n{int(NOW - set_up_hours_ago * 3600)}\n{NOW}\n{SEP}\n{calendar}")


def finding(text: str):
    return backupcheck.freshness("mx.example.org", backupcheck.parse_state(text))


def test_the_restic_wrapper_path_is_the_backup_stages():
    assert backupcheck.RESTIC == backup.RESTIC


def test_the_interval_is_the_longest_gap_of_the_schedule():
    assert backupcheck.interval_of(CALENDAR_DAILY) == 86400
    assert backupcheck.interval_of(CALENDAR_WEEKDAYS) == 3 * 86400
    assert backupcheck.interval_of("Failed to parse calendar specification 'x'") is None


@pytest.mark.parametrize("text,status,words", [
    (answer(f"[{snapshot(30)},{snapshot(6)}]"), OK, "newest of 2 snapshot(s) 6.0 h old; the timer runs every 24.0 h"),
    (answer(f"[{snapshot(48.5)}]"), OK, "48.5 h old"),
    (answer(f"[{snapshot(60)}]"), WARNING, "backups are late"),
    (answer(f"[{snapshot(60)}]", calendar=CALENDAR_WEEKDAYS), OK, "every 3.0 days"),
    (answer(f"[{snapshot(6)}]", result="exit-code", started="Sun 2026-11-29 03:00:01 UTC"), WARNING,
     "the last run (started 2026-11-29 03:00 UTC) failed: exit-code"),
    (answer(f"[{snapshot(6)}]", timer="inactive"), WARNING, "timer is not active"),
    (answer("[]", set_up_hours_ago=2), WARNING, "no backup snapshot yet: backups were set up 2.0 h ago"),
    (answer("", rc=10, err=NO_REPO, set_up_hours_ago=2), WARNING, "no backup snapshot yet"),
    (answer("[]", set_up_hours_ago=80), PROBLEM, "no backup snapshot at all although backups are on since 3.3 days"),
    (answer("", rc=10, err=NO_REPO, set_up_hours_ago=1, result="exit-code", started="Sun 2026-11-29 08:00:00 UTC"),
     PROBLEM, "no backup snapshot at all; the last run"),
    (answer("", rc=1, err=AUTH_ERROR), PROBLEM, "cannot read the backup repository: Fatal: unable to open repository"),
    (answer("", rc=124), PROBLEM, "restic got no answer within 45 s"),
    ("no-restic\n" + answer()[answer().index(SEP):], PROBLEM, "mailstead-restic is missing"),
    (answer("[{]"), PROBLEM, "cannot read restic's answer"),
])
def test_what_the_hosts_backups_mean(text, status, words):
    f = finding(text)
    assert f.status == status and words in f.detail, f
    assert f.status == OK or "mx.example.org" in f.fix


def test_backups_off_is_said_and_nothing_is_asked():
    class T:
        fqdn = "mx.example.org"

        class settings:
            class backup:
                repository = None
    [f] = backupcheck.backup_freshness(None, T())
    assert f.status == OK and "off" in f.detail
