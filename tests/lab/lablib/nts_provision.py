"""Provision a chrony NTS time server on the lab's infra host. Idempotent.

Runs *inside* the infra host with Debian's python3 (stdlib only): `python3 -c <this file>`, configuration
as JSON on stdin: {cert, key, allow: [prefixes]}. Prints one JSON line: {"changed": [...]}.
The server serves its own clock (`local stratum`), never sets it (chronyd -x: a container shares the
machine's clock); the lab hosts authenticate it with NTS against the lab world CA.
"""
import json
import os
import subprocess
import sys

cfg = json.load(sys.stdin)
changed = []


def installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", pkg], capture_output=True, text=True)
    return p.stdout.strip() == "installed"


def put(path, content, mode=0o644, group=None):
    try:
        if open(path).read() == content:
            return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)
    os.chmod(path, mode)
    if group:
        os.chown(path, 0, int(subprocess.run(["getent", "group", group], capture_output=True,
                                             text=True, check=True).stdout.split(":")[2]))
    return True


if not installed("chrony"):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "chrony"], env=env, stdout=subprocess.DEVNULL, check=True)
    changed.append("chrony installed")

files = [
    put("/etc/chrony/nts.crt", cfg["cert"]),
    put("/etc/chrony/nts.key", cfg["key"], 0o640, "_chrony"),
    put("/etc/chrony/chrony.conf", "\n".join([
        "# Written by the mailstead lab (tests/lab/lablib/nts_provision.py): the lab's NTS server.",
        "local stratum 8",
        *[f"allow {prefix}" for prefix in cfg["allow"]],
        "ntsserverkey /etc/chrony/nts.key",
        "ntsservercert /etc/chrony/nts.crt",
        "ntsdumpdir /var/lib/chrony",
        "driftfile /var/lib/chrony/chrony.drift",
        "",
    ])),
    put("/etc/systemd/system/chrony.service.d/lab.conf", "\n".join([
        "[Unit]", "ConditionCapability=", "", "[Service]", "ExecStart=",
        "ExecStart=!/usr/sbin/chronyd $DAEMON_OPTS -x", "",
    ])),
]
if any(files):
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "restart", "chrony"], check=True)
    changed.append("chrony NTS server")
print(json.dumps({"changed": changed}))
