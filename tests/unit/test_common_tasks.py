"""tasks/common.py and the sshd check of tasks/base.py without a host: the commands the operations generate
(order, what is written where, markers), run for real against temporary directories where that is possible.
The same behaviour on booted hosts: tests/lab/test_deploy_safety.py."""

from __future__ import annotations

import grp
import hashlib
import inspect
import logging
import os
import pwd
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api import FileUploadCommand, StringCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import File, FileContents, Sha1File

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tasks import base, common, opensmtpd  # noqa: E402

SECRET = "s3cret-do-not-print-" + "x" * 20
ME, MY_GROUP = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


class FakeHost:
    """Stands in for pyinfra's host inside an operation body: facts from a dict, noops recorded."""

    def __init__(self, facts: dict | None = None, global_arguments: dict | None = None):
        self.facts = facts or {}
        self.noops: list[str] = []
        self.logs: list[str] = []  # host.log(): the "Will modify <dest>" lines of --diff
        self.current_op_global_arguments = global_arguments or {}

    def get_fact(self, cls, **kwargs):
        key = (cls, kwargs.get("path"))
        if key in self.facts:
            return self.facts[key]
        if cls is common.PendingMarkers:
            return self.facts.get(cls, set())
        raise AssertionError(f"unexpected fact {cls.__name__} {kwargs}")

    def noop(self, description):
        self.noops.append(description)

    def log(self, message, log_func=None):
        self.logs.append(message)


class FakeOp:
    def __init__(self, changed: bool):
        self.changed = changed
        self.will_change = changed

    def did_change(self):
        return self.changed


def run_op(op, fake_host: FakeHost, *args, executing: bool = True, diff: bool = False, **kwargs) -> list:
    """The operation's commands; ``diff``: as with ``pyinfra --diff`` (config.DIFF)."""
    state = SimpleNamespace(is_executing=executing, cwd=None, config=SimpleNamespace(DIFF=diff))
    with ctx_host.use(fake_host), ctx_state.use(state):
        return list(op._inner(*args, **kwargs))


def text(command) -> str:
    return command.get_raw_value() if isinstance(command, StringCommand) else str(command)


def shell_texts(commands) -> list[str]:
    return [text(c) for c in commands if not isinstance(c, FileUploadCommand)]


def file_facts(dest: str, data: bytes | None, user="root", group="root", mode=644) -> dict:
    if data is None:
        return {(File, dest): None, (Sha1File, dest): None}
    return {(File, dest): {"user": user, "group": group, "mode": mode},
            (Sha1File, dest): hashlib.sha1(data).hexdigest()}


# ----------------------------------------------------------------------------- checked_file


def test_an_up_to_date_file_generates_nothing():
    h = FakeHost(file_facts("/etc/x.conf", b"same\n"))
    assert run_op(common.checked_file, h, dest="/etc/x.conf", content="same\n", restarts="x") == []
    assert h.noops == ["/etc/x.conf is up to date"]


def test_a_new_secret_is_uploaded_into_the_root_only_staging_dir_then_checked_next_to_dest():
    dest = "/etc/dovecot/users"
    h = FakeHost(file_facts(dest, None))
    cmds = run_op(common.checked_file, h, dest=dest, content=SECRET, mode="640", group="dovecot",
                  check="doveconf -n -c {staged}", restarts="dovecot")
    uploads = [c for c in cmds if isinstance(c, FileUploadCommand)]
    assert len(uploads) == 1
    up = uploads[0]
    assert up.src.read() == SECRET.encode()
    assert up.dest.startswith(common.STAGING_DIR + "/") and up.dest.endswith("-users")
    assert up.remote_temp_filename is None  # no pyinfra temp file in /tmp: root writes the staging path itself
    shell = shell_texts(cmds)
    first, chown, check, last = shell
    # 1. the staging dir exists, is root's and 0700, before anything is uploaded; a stale upload is removed
    assert cmds.index(up) == 1
    assert f"chmod 700 {common.STAGING_DIR}" in first and "chown root:root" in first
    assert first.endswith(f"rm -f {shlex.quote(up.dest)}")
    # 2. owner and mode are set while the file is still in the staging dir, then it moves next to dest
    assert chown == (f"chown root:dovecot {up.dest} && chmod 640 {up.dest}"
                     f" && mv -f {up.dest} {dest}{common.STAGED_SUFFIX}")
    # 3. the check runs on the staged copy next to dest
    assert f"doveconf -n -c {dest}{common.STAGED_SUFFIX}" in check
    assert "the live file is unchanged" in check
    # 4. marker and move into place in one command, the marker first
    marker = f"{common.PENDING_DIR}/dovecot"
    assert last.endswith(f"touch {marker} && mv -f {dest}{common.STAGED_SUFFIX} {dest}")
    assert not any(SECRET in s for s in shell)


def test_without_restarts_no_marker_is_written():
    h = FakeHost(file_facts("/etc/x.conf", b"old\n"))
    shell = shell_texts(run_op(common.checked_file, h, dest="/etc/x.conf", content="new\n"))
    assert shell[-1] == "mv -f /etc/x.conf.mailstead-new /etc/x.conf"
    assert not any(common.PENDING_DIR + "/" in s for s in shell)


def test_an_owner_or_mode_fix_writes_the_marker_in_the_same_command():
    h = FakeHost(file_facts("/etc/x.conf", b"same\n", group="adm", mode=600))
    shell = shell_texts(run_op(common.checked_file, h, dest="/etc/x.conf", content="same\n", restarts="x"))
    assert len(shell) == 1
    assert shell[0].endswith(f"touch {common.PENDING_DIR}/x && chown root:root /etc/x.conf && chmod 644 /etc/x.conf")


# ----------------------------------------------------------------------------- --diff


def diff_output(caplog, h: FakeHost, *args, **kwargs) -> str:
    """Everything checked_file logs with --diff (host.log lines and pyinfra's logger)."""
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        run_op(common.checked_file, h, *args, diff=True, **kwargs)
    return "\n".join(h.logs + [r.getMessage() for r in caplog.records])


def test_secret_is_the_default():
    assert inspect.signature(common.checked_file._inner).parameters["secret"].default is True


def test_diff_shows_a_non_secret_change_as_a_unified_diff(caplog):
    dest = "/etc/x.conf"
    facts = file_facts(dest, b"a\nb\nold\n") | {(FileContents, dest): ["a", "b", "old"]}
    out = diff_output(caplog, FakeHost(facts), dest=dest, content="a\nb\nnew\n", secret=False)
    assert f"Will modify {dest}" in out
    assert "@@ -1,3 +1,3 @@" in out and "- old" in out and "+ new" in out and "  b" in out
    assert "content hidden" not in out


def test_diff_shows_a_new_non_secret_file_whole(caplog):
    dest = "/etc/x.conf"
    out = diff_output(caplog, FakeHost(file_facts(dest, None)), dest=dest, content="one\ntwo\n", secret=False)
    assert f"Will create {dest}" in out and "+ one" in out and "+ two" in out


def test_diff_never_shows_or_reads_a_secret_file(caplog):
    dest = "/etc/dovecot/users"
    # no FileContents fact: FakeHost fails on a fact it was not given, so the live file is never read
    for exists in (True, False):
        h = FakeHost(file_facts(dest, b"old " + SECRET.encode() if exists else None))
        out = diff_output(caplog, h, dest=dest, content="new " + SECRET, mode="640")
        verb = "modify" if exists else "create"
        assert f"Will {verb} {dest} (content hidden: it may hold a secret)" in out
        assert SECRET not in out and "new" not in out.replace(f"Will {verb}", "")
        caplog.clear()


def test_diff_shows_an_owner_or_mode_fix_but_no_content(caplog):
    h = FakeHost(file_facts("/etc/x.conf", SECRET.encode(), group="adm", mode=600))
    out = diff_output(caplog, h, dest="/etc/x.conf", content=SECRET)
    assert "mode 600" in out and "mode 644" in out and "chown root:adm" in out and "chown root:root" in out
    assert SECRET not in out


def test_without_diff_nothing_is_logged_and_the_live_file_is_not_read(caplog):
    h = FakeHost(file_facts("/etc/x.conf", b"old\n"))  # no FileContents fact given
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        run_op(common.checked_file, h, dest="/etc/x.conf", content="new\n", secret=False)
    assert h.logs == [] and caplog.records == []


def test_only_the_credentials_table_is_secret():
    assert opensmtpd.table_is_secret("credentials")
    assert not any(opensmtpd.table_is_secret(n) for n in opensmtpd.TABLE_NAMES if n != "credentials")


def test_with_sudo_the_login_users_upload_goes_to_a_private_dir_not_tmp():
    h = FakeHost(file_facts("/etc/x.conf", None), global_arguments={"_sudo": True})
    cmds = run_op(common.checked_file, h, dest="/etc/x.conf", content=SECRET)
    up = next(c for c in cmds if isinstance(c, FileUploadCommand))
    mkdir = cmds[cmds.index(up) - 1]
    assert isinstance(mkdir, StringCommand) and mkdir.connector_arguments["_sudo"] is False
    assert text(mkdir) == f"umask 077 && mkdir -p {common.LOGIN_UPLOAD_DIR} && chmod 700 {common.LOGIN_UPLOAD_DIR}"
    assert up.remote_temp_filename.startswith(common.LOGIN_UPLOAD_DIR + "/")
    assert not up.remote_temp_filename.startswith("/tmp")


@pytest.mark.parametrize("bad", ["Dovecot", "../etc/passwd", "a b", "", "x;rm"])
def test_marker_names_are_checked(bad):
    with pytest.raises(ValueError):
        run_op(common.checked_file, FakeHost(file_facts("/etc/x", None)), dest="/etc/x", content="x", restarts=bad)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The state dirs moved under tmp_path, so the generated commands can run for real on this machine."""
    state = tmp_path / "state"
    monkeypatch.setattr(common, "STATE_DIR", str(state))
    monkeypatch.setattr(common, "STAGING_DIR", str(state / "staging"))
    monkeypatch.setattr(common, "PENDING_DIR", str(state / "pending"))
    (tmp_path / "etc").mkdir()
    return tmp_path


def execute(cmds, *, stop_before_last: bool = False) -> subprocess.CompletedProcess | None:
    """Run the commands as pyinfra would: shell commands with sh, the upload as SFTP does (umask 022)."""
    if stop_before_last:
        cmds = cmds[:-1]
    for c in cmds:
        if isinstance(c, FileUploadCommand):
            old = os.umask(0o022)
            try:
                Path(c.dest).write_bytes(c.src.read())
            finally:
                os.umask(old)
            # what the upload must never be: readable by others through the directories it sits in
            assert os.stat(Path(c.dest).parent).st_mode & 0o777 == 0o700
            continue
        proc = subprocess.run(["sh", "-c", text(c)], capture_output=True, text=True)
        if proc.returncode:
            return proc
    return None


def test_the_commands_install_the_file_and_the_marker_for_real(sandbox):
    dest = str(sandbox / "etc" / "app.conf")
    Path(dest).write_text("old\n")
    h = FakeHost(file_facts(dest, b"old\n", user=ME, group=MY_GROUP))
    cmds = run_op(common.checked_file, h, dest=dest, content=SECRET, mode="600", user=ME, group=MY_GROUP,
                  check="grep -q s3cret {staged}", restarts="app")
    assert execute(cmds) is None
    assert Path(dest).read_text() == SECRET
    assert os.stat(dest).st_mode & 0o777 == 0o600
    assert (Path(common.PENDING_DIR) / "app").exists()
    assert os.stat(common.STAGING_DIR).st_mode & 0o777 == 0o700
    assert os.listdir(common.STAGING_DIR) == [] and not Path(dest + common.STAGED_SUFFIX).exists()


def test_an_interrupted_run_leaves_the_marker_with_the_file_or_neither(sandbox):
    dest = str(sandbox / "etc" / "app.conf")
    Path(dest).write_text("old\n")
    h = FakeHost(file_facts(dest, b"old\n", user=ME, group=MY_GROUP))
    cmds = run_op(common.checked_file, h, dest=dest, content="new\n", user=ME, group=MY_GROUP, restarts="app")
    execute(cmds, stop_before_last=True)  # killed before the move: old file, no marker
    assert Path(dest).read_text() == "old\n" and not (Path(common.PENDING_DIR) / "app").exists()
    # the last command writes the marker before it moves: whichever moment it is killed at, the new file
    # is never live without the marker
    last = text(cmds[-1])
    assert last.index("touch") < last.index("mv -f")
    execute(cmds[-1:])
    assert Path(dest).read_text() == "new\n" and (Path(common.PENDING_DIR) / "app").exists()


def test_a_failing_check_leaves_the_live_file_and_writes_no_marker(sandbox):
    dest = str(sandbox / "etc" / "app.conf")
    Path(dest).write_text("old\n")
    h = FakeHost(file_facts(dest, b"old\n", user=ME, group=MY_GROUP))
    cmds = run_op(common.checked_file, h, dest=dest, content="bad\n", user=ME, group=MY_GROUP,
                  check="grep -q good {staged}", restarts="app")
    proc = execute(cmds)
    assert proc is not None and proc.returncode != 0
    assert f"the new {dest} failed its check; the live file is unchanged" in proc.stderr
    assert Path(dest).read_text() == "old\n"
    assert not Path(dest + common.STAGED_SUFFIX).exists()
    assert not (Path(common.PENDING_DIR) / "app").exists()


def test_a_symlinked_staging_dir_is_refused(sandbox, tmp_path):
    Path(common.STATE_DIR).mkdir()
    (tmp_path / "elsewhere").mkdir(mode=0o777)
    os.symlink(tmp_path / "elsewhere", common.STAGING_DIR)
    dest = str(sandbox / "etc" / "app.conf")
    cmds = run_op(common.checked_file, FakeHost(file_facts(dest, None)), dest=dest, content=SECRET,
                  user=ME, group=MY_GROUP)
    proc = execute(cmds[:1])
    assert proc is not None and "is a symlink" in proc.stderr
    assert list((tmp_path / "elsewhere").iterdir()) == []


# ----------------------------------------------------------------------------- markers and restarts


def test_the_pending_markers_fact():
    fact = common.PendingMarkers()
    assert "ls -1A /var/lib/mailstead/pending" in fact.command()
    assert fact.process(["dovecot", "nginx", ""]) == {"dovecot", "nginx"}
    assert fact.default() == set()


def test_run_pending_honours_the_marker_and_removes_it_after_the_command():
    h = FakeHost({common.PendingMarkers: {"dovecot"}})
    cmds = run_op(common.run_pending, h, marker="dovecot", command="systemctl try-restart dovecot",
                  ops=(FakeOp(False),), clears=("dovecot-auth-cache",))
    assert shell_texts(cmds) == [
        "systemctl try-restart dovecot && rm -f /var/lib/mailstead/pending/dovecot "
        "/var/lib/mailstead/pending/dovecot-auth-cache"]


def test_run_pending_runs_on_a_change_and_does_nothing_otherwise():
    cmds = run_op(common.run_pending, FakeHost(), marker="x", command="true", ops=(FakeOp(False), FakeOp(True)))
    assert shell_texts(cmds) == ["true && rm -f /var/lib/mailstead/pending/x"]
    h = FakeHost({common.PendingMarkers: {"other"}})
    assert run_op(common.run_pending, h, marker="x", command="true", ops=(FakeOp(False),)) == []
    assert h.noops == ["nothing pending for x"]


def test_run_pending_at_prepare_time_uses_what_the_ops_will_do():
    op = FakeOp(True)
    op.did_change = lambda: pytest.fail("did_change() is not available before execution")
    cmds = run_op(common.run_pending, FakeHost(), marker="x", command="true", ops=(op,), executing=False)
    assert len(cmds) == 1


def test_restart_if_restarts_or_reloads_with_the_marker_of_the_service(monkeypatch):
    calls = []
    monkeypatch.setattr(common, "run_pending", lambda **kw: calls.append(kw) or "op")
    a, b = FakeOp(False), FakeOp(True)
    assert common.restart_if("dovecot", a, b, clears=["dovecot-auth-cache"]) == "op"
    common.restart_if("nginx", reload=True)
    assert calls[0] == {"marker": "dovecot", "command": "systemctl try-restart dovecot", "ops": (a, b),
                        "clears": ("dovecot-auth-cache",),
                        "name": "Restart dovecot after a configuration change"}
    assert calls[1]["command"] == "systemctl try-reload-or-restart nginx" and calls[1]["marker"] == "nginx"


def test_absent_file_and_mark_pending():
    h = FakeHost({(common._PathExists, "/etc/old.conf"): True})
    assert shell_texts(run_op(common.absent_file, h, path="/etc/old.conf", restarts="ssh")) == [
        "umask 077 && mkdir -p /var/lib/mailstead/pending"
        " && touch /var/lib/mailstead/pending/ssh && rm -f /etc/old.conf"]
    h = FakeHost({(common._PathExists, "/etc/old.conf"): False})
    assert run_op(common.absent_file, h, path="/etc/old.conf", restarts="ssh") == []
    assert shell_texts(run_op(common.mark_pending, FakeHost(), markers=["a", "b"], ops=(FakeOp(True),)))[0] \
        .endswith("touch /var/lib/mailstead/pending/a /var/lib/mailstead/pending/b && true")
    assert run_op(common.mark_pending, FakeHost(), markers="a", ops=(FakeOp(False),)) == []


# ----------------------------------------------------------------------------- sshd


SSHD_CONTENT = common.render("base/sshd.conf.j2", root_login="prohibit-password")

FAKE_SSHD = textwrap.dedent(f"""\
    #!{sys.executable}
    # `sshd -T -f FILE` as far as this test needs: Include globs read in lexical order, first value wins
    import glob, sys
    assert sys.argv[1:3] == ["-T", "-f"], sys.argv
    DEFAULTS = {{"passwordauthentication": "yes", "kbdinteractiveauthentication": "yes",
                "permitrootlogin": "without-password", "pubkeyauthentication": "yes"}}
    seen = {{}}
    def read(path):
        for line in open(path):
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            if w[0].lower() == "include":
                for pattern in w[1:]:
                    for f in sorted(glob.glob(pattern)):
                        read(f)
                continue
            value = " ".join(w[1:]).lower()
            seen.setdefault(w[0].lower(), "without-password" if value == "prohibit-password" else value)
    read(sys.argv[3])
    if seen.get("broken"):
        print("/etc/ssh/sshd_config line 3: Bad configuration option: broken", file=sys.stderr)
        sys.exit(255)
    for k, v in {{**DEFAULTS, **seen}}.items():
        print(k, v)
""")


@pytest.fixture
def ssh_host(tmp_path):
    """A host's /etc/ssh as Debian 13 ships it (Include of sshd_config.d first), a fake sshd, a staged file."""
    ssh = tmp_path / "ssh"
    (ssh / "sshd_config.d").mkdir(parents=True)
    (ssh / "sshd_config").write_text(f"Include {ssh}/sshd_config.d/*.conf\n\nKbdInteractiveAuthentication no\n"
                                     "UsePAM yes\n")
    sshd = tmp_path / "sshd"
    sshd.write_text(FAKE_SSHD)
    sshd.chmod(0o755)
    work = tmp_path / "staging"
    work.mkdir(mode=0o700)
    staged = ssh / "sshd_config.d" / ("00-mailstead.conf" + common.STAGED_SUFFIX)
    staged.write_text(SSHD_CONTENT)

    def check() -> subprocess.CompletedProcess:
        command = base.sshd_check_command(SSHD_CONTENT, sshd=str(sshd), ssh_dir=str(ssh), work_dir=str(work),
                                          run_dir=str(tmp_path / "run"))
        proc = subprocess.run(["sh", "-c", command.replace("{staged}", shlex.quote(str(staged)))],
                              capture_output=True, text=True)
        assert list(work.iterdir()) == [], "the check left its copy of the configuration behind"
        return proc

    return SimpleNamespace(dir=ssh, check=check)


def test_our_dropin_sorts_before_cloud_init():
    assert sorted(["50-cloud-init.conf", base.SSHD_DROPIN_NAME, "10-foo.conf"])[0] == base.SSHD_DROPIN_NAME
    assert base.SSHD_DROPIN == "/etc/ssh/sshd_config.d/00-mailstead.conf"
    assert "/etc/ssh/sshd_config.d/50-mailstead.conf" in base.OLD_SSHD_DROPINS


def test_sshd_expectations_follow_the_template():
    wanted = dict(base.sshd_expectations(SSHD_CONTENT))
    assert wanted["passwordauthentication"] == "no"
    assert wanted["kbdinteractiveauthentication"] == "no"
    assert wanted["authenticationmethods"] == "publickey"
    assert wanted["permitrootlogin"] == "prohibit-password|without-password"
    assert dict(base.sshd_expectations("PermitRootLogin no\n"))["permitrootlogin"] == "no"


def test_sshd_check_passes_on_a_plain_host_and_with_cloud_init_after_us(ssh_host):
    assert ssh_host.check().returncode == 0
    (ssh_host.dir / "sshd_config.d" / "50-cloud-init.conf").write_text("PasswordAuthentication yes\n")
    # the old drop-in, whatever it says, is left out: it is removed right after the new one is installed
    (ssh_host.dir / "sshd_config.d" / "50-mailstead.conf").write_text("PermitRootLogin yes\n")
    proc = ssh_host.check()
    assert proc.returncode == 0, proc.stderr


def test_sshd_check_fails_when_another_file_wins(ssh_host):
    (ssh_host.dir / "sshd_config.d" / "00-aaa.conf").write_text("PasswordAuthentication yes\n")
    proc = ssh_host.check()
    assert proc.returncode != 0
    assert "would say 'passwordauthentication yes', not 'passwordauthentication no'" in proc.stderr
    assert "00-aaa.conf" in proc.stderr


def test_sshd_check_fails_when_sshd_config_does_not_include_the_dropins(ssh_host):
    (ssh_host.dir / "sshd_config").write_text("PasswordAuthentication yes\n")
    proc = ssh_host.check()
    assert proc.returncode != 0 and "passwordauthentication" in proc.stderr


def test_sshd_check_reports_a_config_sshd_refuses(ssh_host):
    (ssh_host.dir / "sshd_config.d" / "60-broken.conf").write_text("Broken yes\n")
    proc = ssh_host.check()
    assert proc.returncode == 255 and "Bad configuration option" in proc.stderr


def test_every_task_says_whether_its_file_holds_a_secret():
    """Each checked_file call in tasks/ passes secret= explicitly (the default hides the diff, which is safe but
    useless for a plain configuration file): whoever adds a file decides."""
    import ast

    missing = []
    for path in sorted((ROOT / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "checked_file":
                if not any(k.arg == "secret" for k in node.keywords):
                    missing.append(f"{path.name}:{node.lineno}")
    assert not missing, f"checked_file without secret=: {missing}"
