"""Provision Debian's pebble (a test ACME CA) on the lab's infra host. Idempotent.

Runs *inside* the infra host with Debian's python3 (stdlib only): `python3 -c <this file>`, configuration
as JSON on stdin: {cert, key, dns_server}. Prints one JSON line: {"changed": [...], "root": <PEM>}.

Debian's pebble ships only the binary (no config, unit or CA): the lab writes all three. Its ACME listener
(14000) presents a certificate of the lab's world CA for infra.lab.test; its management interface (15000,
`/roots/0` = the issuing root, new at every pebble start) is open to the lab. HTTP-01 is validated on port 80
(pebble's default would be 5002), names are resolved through the lab's DNS (`-dnsserver`).
"""
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request

cfg = json.load(sys.stdin)
changed = []


def installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", pkg], capture_output=True, text=True)
    return p.stdout.strip() == "installed"


def put(path, content, mode=0o644):
    try:
        if open(path).read() == content:
            return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(path + ".new", mode)
    os.rename(path + ".new", path)
    return True


if not installed("pebble"):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "pebble"], env=env, stdout=subprocess.DEVNULL, check=True)
    changed.append("pebble installed")

config = {"pebble": {
    "listenAddress": ":14000",
    "managementListenAddress": ":15000",
    "certificate": "/etc/pebble/acme.crt",
    "privateKey": "/etc/pebble/acme.key",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": False,
    "retryAfter": {"authz": 1, "order": 1},
}}
files = [
    put("/etc/pebble/acme.crt", cfg["cert"]),
    put("/etc/pebble/acme.key", cfg["key"], 0o600),
    put("/etc/pebble/pebble.json", json.dumps(config, indent=1) + "\n"),
    put("/etc/systemd/system/pebble.service", "\n".join([
        "# Written by the mailstead lab (tests/lab/lablib/pebble_provision.py): the lab's ACME CA.",
        "[Unit]", "Description=pebble ACME test CA (mailstead lab)", "After=network.target", "",
        "[Service]",
        # no random badNonce, no validation delay, and no reuse of valid authorizations (pebble reuses them
        # half of the time by default): every order proves every name, so tests see each challenge done
        "Environment=PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0",
        f"ExecStart=/usr/bin/pebble -config /etc/pebble/pebble.json -dnsserver {cfg['dns_server']}",
        "Restart=on-failure", "",
        "[Install]", "WantedBy=multi-user.target", "",
    ])),
]
active = subprocess.run(["systemctl", "is-active", "--quiet", "pebble"]).returncode == 0
if any(files) or not active:
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "enable", "--quiet", "pebble"], check=True)
    subprocess.run(["systemctl", "restart", "pebble"], check=True)
    changed.append("pebble (re)started")

ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # our own listener on loopback
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen("https://127.0.0.1:15000/roots/0", context=ctx, timeout=5) as r:
            root = r.read().decode()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("pebble's management interface did not answer on 127.0.0.1:15000")
        time.sleep(0.2)
print(json.dumps({"changed": changed, "root": root}))
