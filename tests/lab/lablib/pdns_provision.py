"""Provision PowerDNS Authoritative on the lab's infra host. Idempotent.

Runs *inside* the infra host with Debian's python3 (stdlib only): `python3 -c <this file>`,
configuration as JSON on stdin: {api_key, tsig: {name, algorithm, secret}, listen: [...],
allow_from: [...], dnsupdate_from: [...], nameserver, soa, zones: {zone: [rrset...]},
dynamic_zone}. Prints one JSON line: {"changed": [...]}.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

cfg = json.load(sys.stdin)
changed = []
API = "http://127.0.0.1:8081/api/v1/servers/localhost"
DB = "/var/lib/powerdns/pdns.sqlite3"
CONF = "/etc/powerdns/pdns.d/zz-mailstead-lab.conf"


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", pkg], capture_output=True, text=True)
    return p.stdout.strip() == "installed"


if not (installed("pdns-server") and installed("pdns-backend-sqlite3")):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh("apt-get", "update", "-q", env=env, stdout=subprocess.DEVNULL)
    # The service fails to start until a backend is configured: expected, configured below.
    subprocess.run(["apt-get", "install", "-y", "-q", "pdns-server", "pdns-backend-sqlite3"],
                   env=env, stdout=subprocess.DEVNULL)
    if not (installed("pdns-server") and installed("pdns-backend-sqlite3")):
        sys.exit("installing pdns-server pdns-backend-sqlite3 failed")
    changed.append("packages")

conf = "\n".join([
    "# Written by the mailstead lab (tests/lab/lablib/pdns_provision.py)",
    "launch=gsqlite3",
    f"gsqlite3-database={DB}",
    f"local-address={', '.join(cfg['listen'])}",
    "api=yes",
    f"api-key={cfg['api_key']}",
    "webserver=yes",
    "webserver-address=0.0.0.0",
    "webserver-port=8081",
    f"webserver-allow-from={','.join(cfg['allow_from'])}",
    "dnsupdate=yes",
    f"default-soa-content={cfg['soa']}",
    "",
])
try:
    old = open(CONF).read()
except FileNotFoundError:
    old = None
if old != conf:
    fd = os.open(CONF, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as f:
        f.write(conf)
    sh("chown", "root:pdns", CONF)
    changed.append("config")

if not os.path.exists(DB):
    schema = open("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql").read()
    tmp = DB + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    con = sqlite3.connect(tmp)
    con.executescript(schema)
    con.commit()
    con.close()
    os.rename(tmp, DB)
    sh("chown", "pdns:pdns", DB, os.path.dirname(DB))
    changed.append("database")

active = subprocess.run(["systemctl", "is-active", "--quiet", "pdns"]).returncode == 0
if changed or not active:
    sh("systemctl", "enable", "--quiet", "pdns")
    sh("systemctl", "restart", "pdns")
    if "restart" not in changed:
        changed.append("restart")


def api(method, path, body=None, ok=(200, 201, 204)):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path, data=data, method=method,
                                 headers={"X-API-Key": cfg["api_key"], "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        if e.code in ok:
            return e.code, None
        return e.code, e.read().decode(errors="replace")


deadline = time.monotonic() + 30
while True:
    try:
        status, _ = api("GET", "")
        if status == 200:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("PowerDNS API did not answer on 127.0.0.1:8081")
    time.sleep(0.2)

# TSIG key for RFC 2136 updates.
tsig = cfg["tsig"]
status, key = api("GET", f"/tsigkeys/{tsig['name']}.")
if status != 200 or key.get("key") != tsig["secret"] or key.get("algorithm", "").rstrip(".") != tsig["algorithm"]:
    if status == 200:
        api("DELETE", f"/tsigkeys/{tsig['name']}.")
    status, res = api("POST", "/tsigkeys", {"name": tsig["name"], "algorithm": tsig["algorithm"],
                                            "key": tsig["secret"]})
    if status != 201:
        sys.exit(f"creating TSIG key failed: {status} {res}")
    changed.append("tsig")

# Zones, created through the API (live at once; pdnsutil-made zones hit the zone cache).
status, zones = api("GET", "/zones")
have = {z["name"] for z in zones}
for zone, rrsets in cfg["zones"].items():
    if zone not in have:
        status, res = api("POST", "/zones", {"name": zone, "kind": "Native",
                                             "nameservers": [cfg["nameserver"]], "rrsets": rrsets})
        if status != 201:
            sys.exit(f"creating zone {zone} failed: {status} {res}")
        changed.append(f"zone {zone}")
        continue
    status, cur = api("GET", f"/zones/{zone}")
    current = {(r["name"], r["type"]): sorted(x["content"] for x in r["records"]) for r in cur["rrsets"]}
    patch = [r for r in rrsets
             if current.get((r["name"], r["type"])) != sorted(x["content"] for x in r["records"])]
    if patch:
        status, res = api("PATCH", f"/zones/{zone}", {"rrsets": patch})
        if status != 204:
            sys.exit(f"seeding {zone} failed: {status} {res}")
        changed.append(f"records {zone}")

# RFC 2136: TSIG-signed updates to the dynamic zone from the lab prefixes.
dz = cfg["dynamic_zone"]
for kind, values in (("TSIG-ALLOW-DNSUPDATE", [tsig["name"]]), ("ALLOW-DNSUPDATE-FROM", cfg["dnsupdate_from"])):
    status, cur = api("GET", f"/zones/{dz}/metadata/{kind}")
    if status == 200 and sorted(cur.get("metadata", [])) == sorted(values):
        continue
    status, res = api("PUT", f"/zones/{dz}/metadata/{kind}", {"kind": kind, "metadata": values})
    if status != 200:
        sys.exit(f"setting {kind} on {dz} failed: {status} {res}")
    changed.append(f"metadata {kind}")

print(json.dumps({"changed": changed}))
