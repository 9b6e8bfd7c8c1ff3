"""The mail core's deploy: validate before activate, and a second deploy that changes (and builds) nothing."""

from __future__ import annotations

from pathlib import Path

from helpers import (IMAP_SCRIPT, STAMP, env_host, file_sha, file_stat, find_in_maildir, lab_ca, net_python,
                     password, run_tasks, swaks, token, unit_since)


def test_broken_smtpd_value_fails_at_validation_and_smtpd_keeps_serving(lab, deployed, mail_hosts, tmp_path):
    staging = env_host(mail_hosts, "staging")
    host = staging["name"]
    conf = "/etc/opensmtpd/smtpd.conf"
    before_sha, before_unit = file_sha(lab, host, conf), unit_since(lab, host, "opensmtpd")
    # a host name with a quote in it: passes into smtpd.conf, where `smtpd -n` must reject it
    run = run_tasks(tmp_path, host, """
        broken = settings.model_copy(update={"fqdn": 'mail.staging.test" listen on 0.0.0.0 port 2525'})
        opensmtpd.deploy(broken, env, results)
    """)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert f"the new {conf} failed its check; the live file is unchanged" in out, out[-3000:]
    assert file_sha(lab, host, conf) == before_sha
    assert lab.exec(host, "test", "-e", conf + ".mailstead-new", check=False).returncode != 0
    assert unit_since(lab, host, "opensmtpd") == before_unit, "smtpd was restarted"
    # and it still accepts and delivers mail with the old configuration
    t = token()
    proc = swaks(lab, "--server", staging["ipv4"], "--from", "after@outside.example", "--to", "alice@staging.test",
                 "--header", f"Subject: {t}")
    assert "Message accepted" in proc.stdout, proc.stdout
    assert find_in_maildir(lab, host, "alice@staging.test", t)


def test_broken_dovecot_value_fails_at_validation_and_dovecot_keeps_serving(lab, deployed, mail_hosts, status,
                                                                           tmp_path):
    staging = env_host(mail_hosts, "staging")
    host = staging["name"]
    conf = "/etc/dovecot/dovecot.conf"
    before_sha, before_unit = file_sha(lab, host, conf), unit_since(lab, host, "dovecot")
    run = run_tasks(tmp_path, host, """
        dovecot.deploy(settings, env, Results(dovecot_settings=["imap_idle_notify_interval = soon"]))
    """)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert f"the new {conf} failed its check; the live file is unchanged" in out, out[-3000:]
    assert file_sha(lab, host, conf) == before_sha
    assert unit_since(lab, host, "dovecot") == before_unit, "dovecot was restarted"
    r = net_python(lab, IMAP_SCRIPT, {"ip": staging["ipv4"], "ca": lab_ca(status), "user": "alice@staging.test",
                                      "password": password(status, "alice@staging.test")})
    assert r["login"] == "OK"


def test_second_deploy_changes_nothing_and_does_not_rebuild(lab, deployed, mail_hosts, request):
    before = {h["name"]: file_stat(lab, h["name"], STAMP) for h in mail_hosts}
    units = {h["name"]: (unit_since(lab, h["name"], "opensmtpd"), unit_since(lab, h["name"], "dovecot")) for h in mail_hosts}
    redeployed = request.getfixturevalue("redeployed")
    assert redeployed.returncode == 0, redeployed.stderr[-3000:]
    assert redeployed.changed() == {}, f"the second deploy changed: {redeployed.changed()}"
    for h in mail_hosts:
        assert file_stat(lab, h["name"], STAMP) == before[h["name"]], "OpenSMTPD was rebuilt"
        assert (unit_since(lab, h["name"], "opensmtpd"), unit_since(lab, h["name"], "dovecot")) == units[h["name"]], \
            "a daemon was restarted by a no-op deploy"


def test_deploy_output_never_shows_passwords_or_hashes(deployed, status):
    """pyinfra's output of the full deploy (plan, operations, commands) holds no password and no hash."""
    import json

    output = deployed.stdout + deployed.stderr
    hashes = json.loads((Path(status["state_dir"]) / "user-hashes.json").read_text())
    secrets = [u["password"] for d in status["domains"] for u in d["users"]]
    secrets += [entry["hash"].split("}", 1)[-1] for entry in hashes.values()]
    assert len(secrets) >= 8
    leaked = [s[:6] + "..." for s in secrets if s in output]
    assert not leaked, f"secrets in the deploy output: {leaked}"


def test_a_new_alias_takes_effect_without_restarting_smtpd(lab, deployed, mail_hosts, tmp_path):
    staging = env_host(mail_hosts, "staging")
    host = staging["name"]
    alias = f"{token()}@staging.test"
    before_unit = unit_since(lab, host, "opensmtpd")
    body = f"""
        env = env.model_copy(update={{"aliases": {{**env.aliases, {alias!r}: ["bob@staging.test"]}}}})
        opensmtpd.deploy(settings, env, results)
    """
    try:
        run = run_tasks(tmp_path, host, body)  # not broken: the same helper, a valid extra alias
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        t = token()
        proc = swaks(lab, "--server", staging["ipv4"], "--from", "x@outside.example", "--to", alias,
                     "--header", f"Subject: {t}")
        assert "Message accepted" in proc.stdout, proc.stdout
        assert find_in_maildir(lab, host, "bob@staging.test", t)
        assert unit_since(lab, host, "opensmtpd") == before_unit, "smtpd was restarted for a table change"
    finally:
        run = run_tasks(tmp_path, host, "opensmtpd.deploy(settings, env, results)\n")
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    proc = swaks(lab, "--server", staging["ipv4"], "--from", "x@outside.example", "--to", alias,
                 "--quit-after", "RCPT")
    assert "550 Invalid recipient" in proc.stdout, proc.stdout
