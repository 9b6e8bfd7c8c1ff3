"""Deploy safety on booted hosts: sshd settings that a cloud image's drop-in cannot override, restarts that an
interrupted run cannot lose (pending markers), and secrets that are never readable while they are staged.

Every test restores what it changes on mail.staging.test (the lab is shared by all test files).
Without a host: tests/unit/test_common_tasks.py.
"""

from __future__ import annotations

import json
import os
import subprocess

from helpers import LABCTL, env_host, run_deploy, run_tasks, token

SSHD_D = "/etc/ssh/sshd_config.d"
OURS = f"{SSHD_D}/00-mailstead.conf"
PENDING = "/var/lib/mailstead/pending"
STAGING = "/var/lib/mailstead/staging"


def sshd_effective(lab, host: str) -> list[str]:
    return lab.exec(host, "sshd", "-T").stdout.lower().splitlines()


def password_attempt(lab, ip: str) -> subprocess.CompletedProcess:
    return lab.net(
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no",
        "-o", "ConnectTimeout=5", f"nobody@{ip}", "true", check=False,
    )


def unit_state(lab, host: str, unit: str) -> str:
    return lab.exec(host, "systemctl", "show", "-p", "MainPID", "-p", "ActiveEnterTimestampMonotonic", unit).stdout


def exists(lab, host: str, path: str) -> bool:
    return lab.exec(host, "test", "-e", path, check=False).returncode == 0


def write(lab, host: str, path: str, content: str, mode: str = "644") -> None:
    lab.exec(host, "sh", "-c", f"cat > {path} && chown root:root {path} && chmod {mode} {path}", input=content)


# ----------------------------------------------------------------------------- state the deploy leaves


def test_deploy_leaves_no_pending_marker_and_a_root_only_staging_dir(lab, deployed, mailstead_hosts):
    for h in mailstead_hosts:
        assert lab.exec(h["name"], "ls", "-A", PENDING).stdout == "", f"{h['name']}: restarts still pending"
        assert lab.exec(h["name"], "stat", "-c", "%a %U %G", STAGING).stdout.split() == ["700", "root", "root"]
        assert lab.exec(h["name"], "ls", "-A", STAGING).stdout == ""
        assert not exists(lab, h["name"], f"{SSHD_D}/50-mailstead.conf")


def test_second_deploy_changes_nothing(redeployed):
    """The markers must not cause a restart at every run."""
    assert redeployed.returncode == 0, redeployed.stderr[-4000:]
    assert redeployed.changed() == {}, f"a second deploy changed: {redeployed.changed()}"


# ----------------------------------------------------------------------------- sshd


def test_cloud_init_dropin_cannot_turn_password_login_back_on(lab, deployed, mail_hosts):
    """A cloud image's 50-cloud-init.conf said PasswordAuthentication yes and sorted before the old
    50-mailstead.conf; sshd keeps the first value it reads. The deploy moves our settings first."""
    staging = env_host(mail_hosts, "staging")
    host = staging["name"]
    ours = lab.exec(host, "cat", OURS).stdout
    try:
        # what an older mailstead left on a cloud image, plus cloud-init's drop-in
        lab.exec(host, "sh", "-c", f"mv {OURS} {SSHD_D}/50-mailstead.conf && "
                                   f"printf 'PasswordAuthentication yes\\n' > {SSHD_D}/50-cloud-init.conf && "
                                   "systemctl reload ssh")
        assert "passwordauthentication yes" in sshd_effective(lab, host), "the old layout should have lost"

        run = run_deploy("--limit", host)
        assert run.returncode == 0, run.stderr[-4000:]
        changed = run.changed()
        for op in ("Harden SSH (keys only)", "Reload ssh after a configuration change"):
            assert changed.get(op) == [host], f"{op!r} not run on {host}: {changed}"

        effective = sshd_effective(lab, host)
        assert "passwordauthentication no" in effective
        assert "kbdinteractiveauthentication no" in effective
        assert "authenticationmethods publickey" in effective
        assert sorted(lab.exec(host, "ls", SSHD_D).stdout.split()) == ["00-mailstead.conf", "50-cloud-init.conf"]
        assert not exists(lab, host, f"{PENDING}/ssh")
        proc = password_attempt(lab, staging["ipv4"])
        assert proc.returncode != 0
        assert "Permission denied (publickey)" in proc.stderr, proc.stderr
    finally:
        lab.exec(host, "rm", "-f", f"{SSHD_D}/50-cloud-init.conf", f"{SSHD_D}/50-mailstead.conf", f"{PENDING}/ssh")
        write(lab, host, OURS, ours)
        lab.exec(host, "systemctl", "reload", "ssh")
    assert "passwordauthentication no" in sshd_effective(lab, host)


def test_a_dropin_that_would_win_over_ours_fails_the_check(lab, deployed, mail_hosts, tmp_path):
    """The validate step runs `sshd -T` on the configuration as it will be: a drop-in sorting before ours that
    turns passwords back on fails the deploy with a clear message, and the live file stays as it was."""
    host = env_host(mail_hosts, "staging")["name"]
    ours = lab.exec(host, "cat", OURS).stdout
    planted = f"{SSHD_D}/00-a-override.conf"
    edited = ours + "# a local edit, so the deploy has a new version to check\n"
    try:
        write(lab, host, planted, "PasswordAuthentication yes\n")
        write(lab, host, OURS, edited)
        run = run_tasks(tmp_path, host, "from tasks import base\nbase._ssh(settings)\n")
        out = run.stdout + run.stderr
        assert run.returncode != 0, out[-3000:]
        assert "would say 'passwordauthentication yes', not 'passwordauthentication no'" in out, out[-3000:]
        assert "00-a-override.conf" in out
        assert f"the new {OURS} failed its check; the live file is unchanged" in out
        assert lab.exec(host, "cat", OURS).stdout == edited
        assert not exists(lab, host, OURS + ".mailstead-new")
        assert not exists(lab, host, f"{PENDING}/ssh")
        assert lab.exec(host, "ls", "-A", STAGING).stdout == ""  # the check's copy of /etc/ssh is gone too
    finally:
        lab.exec(host, "rm", "-f", planted, f"{PENDING}/ssh")
        write(lab, host, OURS, ours)
        lab.exec(host, "systemctl", "reload", "ssh")
    assert "passwordauthentication no" in sshd_effective(lab, host)


# ----------------------------------------------------------------------------- interrupted restarts


IMAP_BANNER = """
import socket, ssl, sys, time
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
for attempt in range(50):
    try:
        with socket.create_connection(("127.0.0.1", 993), timeout=5) as s, ctx.wrap_socket(s) as t:
            print(t.recv(4096).decode().strip())
            break
    except OSError:
        time.sleep(0.2)
"""


def imap_banner(lab, host: str) -> str:
    return lab.exec(host, "python3", "-c", IMAP_BANNER).stdout


def test_a_restart_lost_by_an_interrupted_run_happens_at_the_next_run(lab, deployed, mail_hosts, tmp_path):
    """Run 1 installs a new dovecot.conf and is 'interrupted' before the restart (it ends right after the
    file moved into place). Run 2 sees no file change, but the pending marker makes it restart Dovecot, which
    then serves the new configuration; run 3 restarts nothing."""
    host = env_host(mail_hosts, "staging")["name"]
    greeting = f"mailstead pending test {token()}"
    extra = repr([f'login_greeting = "{greeting}"'])
    before = unit_state(lab, host, "dovecot")
    assert greeting not in imap_banner(lab, host)
    try:
        interrupted = run_tasks(tmp_path, host, f"""
            from tasks import dovecot
            from tasks.common import checked_file
            checked_file(name="dovecot.conf, then the run dies", dest=dovecot.CONFIG,
                         content=dovecot.dovecot_conf(settings, env, {extra}),
                         check="doveconf -n -c {{staged}} >/dev/null", restarts="dovecot")
        """)
        assert interrupted.returncode == 0, interrupted.stderr[-3000:]
        assert greeting in lab.exec(host, "cat", "/etc/dovecot/dovecot.conf").stdout
        assert exists(lab, host, f"{PENDING}/dovecot")
        assert unit_state(lab, host, "dovecot") == before
        assert greeting not in imap_banner(lab, host)

        body = f"from tasks import dovecot\ndovecot.deploy(settings, env, Results(dovecot_settings={extra}))\n"
        rerun = run_tasks(tmp_path, host, body)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert rerun.changed() == {"Restart Dovecot after a change": [host]}, rerun.changed()
        after = unit_state(lab, host, "dovecot")
        assert after != before, "Dovecot was not restarted"
        assert not exists(lab, host, f"{PENDING}/dovecot")
        assert greeting in imap_banner(lab, host)

        again = run_tasks(tmp_path, host, body)
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.changed() == {}, again.changed()
        assert unit_state(lab, host, "dovecot") == after, "a run with nothing pending restarted Dovecot"
    finally:
        restore = run_tasks(tmp_path, host, "from tasks import dovecot\ndovecot.deploy(settings, env, results)\n")
        assert restore.returncode == 0, restore.stderr[-3000:]
    assert greeting not in lab.exec(host, "cat", "/etc/dovecot/dovecot.conf").stdout
    assert not exists(lab, host, f"{PENDING}/dovecot")
    assert greeting not in imap_banner(lab, host)


# ----------------------------------------------------------------------------- secrets while staged


WATCHER = """
import json, os, sys
token, stop, dirs = sys.argv[1].encode(), sys.argv[2], sys.argv[3:]
seen, leaks, denied = set(), set(), set()
print("ready", flush=True)
while not os.path.exists(stop):
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            denied.add(d)
            continue
        for n in names:
            p = os.path.join(d, n)
            seen.add(p)
            try:
                with open(p, "rb") as f:
                    if token in f.read(1 << 16):
                        leaks.add(p)
            except OSError:
                pass
print(json.dumps({"seen": sorted(seen), "leaks": sorted(leaks), "denied": sorted(denied)}))
"""


def test_a_secret_is_never_readable_while_it_is_staged(lab, deployed, mail_hosts, tmp_path):
    """While checked_file uploads and installs a secret (mode 600), an unprivileged user polling every
    place the content passes through (the destination directory, /tmp, /var/tmp, /dev/shm, the staging
    directory) never reads a byte of it; afterwards no copy is left anywhere but the destination.
    (~28 kB, the size of real secrets: much larger uploads through the lab's ProxyCommand transport get
    corrupted - 'Corrupted MAC on input' on the host - independently of mailstead.)"""
    host = env_host(mail_hosts, "staging")["name"]
    secret = token()
    test_dir, stop = "/etc/mailstead-safety-test", "/run/mailstead-safety-test.stop"
    dest = f"{test_dir}/secret"
    dirs = [test_dir, "/tmp", "/var/tmp", "/dev/shm", "/var/lib/mailstead", STAGING]
    lab.exec(host, "sh", "-c", f"rm -rf {test_dir} {stop} && mkdir -m 755 {test_dir}")
    env = dict(os.environ)
    watcher = subprocess.Popen(
        [LABCTL, "exec", host, "--", "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "python3", "-c", WATCHER, secret, stop, *dirs],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert watcher.stdout.readline().strip() == "ready", watcher.stderr.read()
        run = run_tasks(tmp_path, host, f"""
            from tasks.common import checked_file
            checked_file(name="a secret", dest={dest!r}, content=({secret!r} + "\\n") * 1500, mode="600")
        """)
        assert run.returncode == 0, run.stderr[-3000:]
        assert secret not in run.stdout + run.stderr
        lab.exec(host, "touch", stop)
        out, err = watcher.communicate(timeout=60)
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["leaks"] == [], f"readable by nobody while staged: {seen['leaks']}"
        assert dest in seen["seen"], "the watcher never saw the file appear"
        assert STAGING in seen["denied"] or "/var/lib/mailstead" in seen["denied"]
        assert lab.exec(host, "stat", "-c", "%a %U %G", STAGING).stdout.split() == ["700", "root", "root"]
        assert lab.exec(host, "stat", "-c", "%a %U %G", dest).stdout.split() == ["600", "root", "root"]
        assert lab.exec(host, "ls", "-A", STAGING).stdout == ""
        copies = lab.exec(host, "grep", "-rlF", secret, "/tmp", "/var/tmp", "/dev/shm", "/var/lib/mailstead",
                          "/root", test_dir, check=False).stdout.split()
        assert copies == [dest], f"copies of the secret: {copies}"
    finally:
        if watcher.poll() is None:
            lab.exec(host, "touch", stop, check=False)
            try:
                watcher.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.communicate()
        lab.exec(host, "rm", "-rf", test_dir, stop)


# ----------------------------------------------------------------------------- drift behind the deploy's back


def test_drift_behind_the_deploys_back_is_repaired_by_the_next_deploy(lab, deployed, mail_hosts):
    """A deploy reads the managed files' state in a few batched commands and keeps facts while nothing changes
    (tasks/factcache.py); that must not hide drift. Changed behind its back on one host: Dovecot's config
    edited, a helper program deleted, a table's mode loosened, nginx stopped. One deploy of that host repairs
    all four (and restarts Dovecot for its file); the deploy after it changes nothing."""
    host = env_host(mail_hosts, "staging")["name"]
    conf, helper, table = "/etc/dovecot/dovecot.conf", "/usr/local/lib/mailstead/rspamd-configtest", \
        "/etc/mailstead/smtpd/recipients"
    want = {p: lab.exec(host, "sha1sum", p).stdout for p in (conf, helper, table)}
    table_mode = lab.exec(host, "stat", "-c", "%a", table).stdout.strip()
    dovecot_before = unit_state(lab, host, "dovecot")
    try:
        lab.exec(host, "sh", "-c", f"echo '# edited by hand' >> {conf} && rm -f {helper} && chmod 666 {table}"
                                   " && systemctl stop nginx")
        run = run_deploy("--limit", host)
        assert run.returncode == 0, run.stderr[-4000:]
        changed = run.changed()
        for op in ("dovecot.conf (checked with doveconf -n)", "Restart Dovecot after a change",
                   "rspamd helper rspamd-configtest", "smtpd table recipients", "Enable and start nginx"):
            assert changed.get(op) == [host], f"{op!r} did not repair {host}: {changed}"
        assert {p: lab.exec(host, "sha1sum", p).stdout for p in (conf, helper, table)} == want
        assert lab.exec(host, "stat", "-c", "%a", table).stdout.strip() == table_mode
        assert unit_state(lab, host, "dovecot") != dovecot_before, "Dovecot did not restart for its file"
        assert lab.exec(host, "systemctl", "is-active", "nginx", "dovecot").stdout.split() == ["active", "active"]
        again = run_deploy("--limit", host)
        assert again.returncode == 0, again.stderr[-4000:]
        assert again.changed() == {}, f"the deploy after the repair changed: {again.changed()}"
    finally:
        lab.exec(host, "systemctl", "start", "nginx", check=False)
