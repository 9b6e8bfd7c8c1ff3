"""Helpers shared by the lab tests: clients in the lab's outside world and where to look on a host.

Test modules import from here (never from each other). Every client runs inside the lab network
(`lab.net`), as the rules of the lab require.
"""

from __future__ import annotations

import json
import re
import time
import uuid

SWAKS_TIMEOUT = "20"




def env_host(mail_hosts, environment: str) -> dict:
    return next(h for h in mail_hosts if h["environment"] == environment)


def user(status, address: str) -> dict:
    for dom in status["domains"]:
        for u in dom["users"]:
            if u["address"] == address:
                return u
    raise KeyError(address)


def password(status, address: str) -> str:
    return user(status, address)["password"]


def lab_ca(status) -> str:
    """The lab CA certificate (made by mailstead/pki.py under the lab's secrets_dir)."""
    return f"{status['state_dir']}/secrets/lab-ca/ca.crt"


def token() -> str:
    return "tok" + uuid.uuid4().hex[:16]


def swaks(lab, *args: str, input_body: str | None = None):
    """Run swaks from the lab's outside world; returns the CompletedProcess (never raises).
    With `--body -`, `input_body` is the message body (read from stdin)."""
    return lab.net("swaks", "--timeout", SWAKS_TIMEOUT, "--helo", "outside.example", *args, input=input_body,
                   check=False, timeout=120)


def replies(proc) -> list[str]:
    """Server reply lines of a swaks transcript ('<-', '<~' inside TLS, '<**' / '<~*' errors)."""
    out = []
    for line in proc.stdout.splitlines():
        m = re.match(r"^<(?:-|~|\*\*|~\*)\s+(.*)$", line)
        if m:
            out.append(m.group(1))
    return out


def maildir(address: str) -> str:
    local, domain = address.split("@")
    return f"/var/vmail/{domain}/{local}/Maildir"


def find_in_maildir(lab, host: str, address: str, needle: str, folder: str = "", timeout: float = 20.0) -> str:
    """Path of the message holding `needle` in the user's maildir (folder '' = INBOX), waiting for delivery."""
    base = maildir(address) + (f"/.{folder}" if folder else "")
    deadline = time.monotonic() + timeout
    while True:
        proc = lab.exec(host, "sh", "-c", f"grep -rlF -- '{needle}' {base}/new {base}/cur 2>/dev/null", check=False)
        if proc.stdout.strip():
            return proc.stdout.split()[0]
        if time.monotonic() > deadline:
            return ""
        time.sleep(0.5)


def queue(lab, host: str) -> str:
    return lab.exec(host, "/opt/opensmtpd/sbin/smtpctl", "show", "queue", check=False).stdout


def net_python(lab, script: str, args: dict, timeout: int = 120) -> dict:
    """Run `script` with python3 in the lab's outside world; it reads ARGS (JSON) and prints one JSON line."""
    code = f"import json, sys\nARGS = json.loads({json.dumps(json.dumps(args))})\n" + script
    proc = lab.net("python3", "-", input=code, check=False, timeout=timeout)
    assert proc.returncode == 0, f"client script failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])



def smtpd_pid(lab, host: str) -> str:
    """OpenSMTPD's main process id on the host (the same before and after = smtpd did not restart)."""
    return lab.exec(host, "systemctl", "show", "-p", "MainPID", "--value", "opensmtpd").stdout.strip()
