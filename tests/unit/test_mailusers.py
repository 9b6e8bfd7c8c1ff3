"""The mail users stage skips its user/group operations when one `getent` shows everything in place."""

from __future__ import annotations

from tasks.mailusers import in_place

USERS = {"_smtpd": ("nogroup", "/var/empty", "/usr/sbin/nologin"),
         "_smtpq": ("_smtpq", "/var/empty", "/usr/sbin/nologin"),
         "vmail": ("vmail", "/var/vmail", "/usr/sbin/nologin")}
GROUPS = ["_smtpq", "vmail"]
GETENT = """\
_smtpd:x:998:65534::/var/empty:/usr/sbin/nologin
_smtpq:x:997:997::/var/empty:/usr/sbin/nologin
vmail:x:996:996::/var/vmail:/usr/sbin/nologin
_smtpq:x:997:
vmail:x:996:
nogroup:x:65534:
"""


def test_everything_in_place():
    assert in_place(USERS, GROUPS, GETENT)


def test_a_missing_or_different_user_or_group_runs_the_operations():
    assert not in_place(USERS, GROUPS, GETENT.replace("vmail:x:996:996::/var/vmail:", "vmail:x:996:996::/home/vmail:"))
    assert not in_place(USERS, GROUPS, "\n".join(line for line in GETENT.splitlines() if not line.startswith("vmail:x:996:996")))
    assert not in_place(USERS, GROUPS, GETENT.replace("_smtpq:x:997:\n", ""))
    assert not in_place(USERS, GROUPS, GETENT.replace("_smtpd:x:998:65534:", "_smtpd:x:998:100:"))
    assert not in_place(USERS, GROUPS, "")
