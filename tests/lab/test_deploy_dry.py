"""`pyinfra --dry` has no side effect on the deploy machine: on an empty secrets directory it makes no DKIM
key, no CA, no host certificate and no DNS state, and says what the real run would make; the real run still
makes them.

The lab's group data takes another secrets directory from MAILSTEAD_LAB_SECRETS_DIR (one run only).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
from pathlib import Path

from helpers import DeployRun, _pyinfra, run_deploy

STAGING_MAIL = "mail.staging.test"


def files_of(root: Path) -> dict[str, str]:
    """Every file and directory under ``root``: path -> mode and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        mode = f"{stat.S_IMODE(p.lstat().st_mode):o}"
        out[str(p.relative_to(root))] = mode + (" " + hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
    return out


def dry_deploy(secrets_dir: Path) -> DeployRun:
    """`pyinfra --dry --json tests/lab/inventory.py deploy.py` as a person runs it (no -y: pyinfra detects
    changes), with another secrets directory."""
    return _pyinfra("deploy.py", "--dry", env={"MAILSTEAD_LAB_SECRETS_DIR": str(secrets_dir)}, yes=False,
                    timeout=1200)


def test_dry_run_on_an_empty_secrets_dir_writes_nothing(lab, deployed, status, tmp_path):
    empty = tmp_path / "secrets"
    empty.mkdir(mode=0o700)
    real = Path(status["state_dir"]) / "secrets"
    real_before = files_of(real)

    run = dry_deploy(empty)
    out = run.stderr
    assert run.returncode == 0, out[-4000:]
    assert files_of(empty) == {}, f"--dry wrote into the secrets directory: {files_of(empty)}"
    assert files_of(real) == real_before  # and left the lab's own secrets alone
    for host in ("mail.staging.test", "mail.production.test"):
        domain = host.split(".", 1)[1]
        said = [line.split("noop: ", 1)[1] for line in out.splitlines() if re.search(rf"\[{host}\]\s+noop: ", line)]
        if host == STAGING_MAIL:  # tls.mode 'lab'
            assert f"would create the lab CA key {empty}/lab-ca/ca.key" in said, out[-4000:]
            assert f"would create the TLS certificate of {host} {empty}/lab-ca/hosts/{host}.crt (new host)" in said
        else:  # tls.mode 'acme': the host's ACME identity
            assert f"would create the ACME account key of {host} {empty}/acme/{host}/account.key" in said, said
            assert f"would create the TLS key of {host} {empty}/acme/{host}/cert.key" in said, said
        for alg, letter in (("rsa", "r"), ("ed25519", "e")):
            assert any(re.fullmatch(rf"would create the DKIM {alg} key {letter}\d{{8}} of {domain} in "
                                    + re.escape(f"{empty}/dkim/{domain}"), s) for s in said), said
        assert f"_domainkey.{domain} TXT" in out  # the DNS plan names the DKIM records it would publish ...
    assert "p=<new-key-made-by-the-deploy>" in out and "note: dry run" in out  # ... with placeholder keys
    plan = {op["name"]: op["hosts_with_change"] for op in json.loads(run.stdout)["plan"]}
    assert "TLS private key (lab CA)" not in plan  # nothing made, so nothing to upload
    assert "TLS private key (ACME certificate key)" not in plan and "ACME account key" not in plan
    assert any(name.startswith("DNS: apply") for name in plan)  # listed, never run: a dry plan cannot apply


def test_the_real_run_still_makes_them(lab, deployed, status, tmp_path):
    """A real run (staging only) on a copy of the lab's secrets without staging's DKIM keys and host
    certificate makes both again, 0600 in 0700 directories, and publishes the new keys; the new files then
    replace the lab's, so the lab stays consistent (a second run changes nothing)."""
    real = Path(status["state_dir"]) / "secrets"
    work = tmp_path / "secrets"
    shutil.copytree(real, work, symlinks=True)
    shutil.rmtree(work / "dkim" / "staging.test")
    for suffix in (".key", ".crt"):
        (work / "lab-ca" / "hosts" / f"{STAGING_MAIL}{suffix}").unlink()
    old_key = (real / "lab-ca" / "hosts" / f"{STAGING_MAIL}.key").read_bytes()

    run = run_deploy("--limit", STAGING_MAIL, env={"MAILSTEAD_LAB_SECRETS_DIR": str(work)})
    try:
        assert run.returncode == 0, run.stderr[-4000:]
        made = files_of(work)
        assert made["dkim/staging.test"] == "700"
        new = [p for p in made if p.startswith(("dkim/staging.test/", f"lab-ca/hosts/{STAGING_MAIL}"))]
        assert len(new) == 5 and all(made[p].startswith("600 ") for p in new), new
        assert (work / "lab-ca" / "hosts" / f"{STAGING_MAIL}.key").read_bytes() != old_key
        changed = run.changed()
        assert STAGING_MAIL in changed["TLS private key (lab CA)"]
        assert any(n.startswith("DNS: apply") for n in changed), changed
    finally:  # adopt what the run made and published, so that the lab's secrets match its hosts and DNS
        for sub in ("dkim/staging.test", "dns/staging"):
            if (work / sub).exists():
                shutil.rmtree(real / sub, ignore_errors=True)
                shutil.copytree(work / sub, real / sub, symlinks=True)
        for suffix in (".key", ".crt"):
            src = work / "lab-ca" / "hosts" / f"{STAGING_MAIL}{suffix}"
            if src.exists():
                shutil.copy2(src, real / "lab-ca" / "hosts" / src.name)

    again = run_deploy("--limit", STAGING_MAIL)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.changed() == {}, f"after adopting the new secrets a deploy changed: {again.changed()}"
