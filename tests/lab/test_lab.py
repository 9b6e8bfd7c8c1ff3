"""The lab itself: what every other lab test stands on.

Uses the session lab (fixture `lab`, tests/lab/conftest.py). The recovery test boots a second lab with its
own id next to it, breaks it from outside and checks `up` and `down` repair and clean it, so the session
lab is never touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lablib import Lab, topology

pytestmark = pytest.mark.lab

LABCTL = str(Path(__file__).resolve().parent / "labctl")
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def labctl(lab: Lab, *args, **kw):
    env = dict(os.environ, MAILSTEAD_LAB_ID=lab.lab_id)
    return subprocess.run([LABCTL, *args], env=env, capture_output=True, text=True, **kw)


def test_every_host_boots_to_running(lab):
    for h in topology.HOSTS:
        p = lab.exec(h.short, "systemctl", "is-system-running", check=False)
        failed = lab.exec(h.short, "systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
        assert p.stdout.strip() == "running", f"{h.short}: {p.stdout.strip()}; failed units:\n{failed}"
        assert lab.exec(h.fqdn, "hostname", "-f").stdout.strip() == h.fqdn


def test_hosts_have_distinct_identities(lab):
    ids = {lab.exec(h.short, "cat", "/etc/machine-id").stdout.strip() for h in topology.HOSTS}
    keys = {lab.exec(h.short, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
            for h in topology.HOSTS}
    assert len(ids) == len(keys) == len(topology.HOSTS)


def test_names_resolve_from_outside_and_from_hosts(lab):
    for h in topology.HOSTS:
        out = lab.net("getent", "ahosts", h.fqdn).stdout
        assert h.ipv4 in out and h.ipv6 in out, out
    assert "2001:db8:51::11 mail.staging.test" in labctl(lab, "net", "--", "getent", "hosts", "mail.staging.test").stdout
    out = lab.exec("mail-prod", "getent", "ahostsv4", "mail.staging.test").stdout
    assert "198.51.100.11" in out
    # Reverse DNS (PTR from PowerDNS through the lab resolver).
    assert "trap2.production.test" in lab.exec("trap1", "getent", "hosts", "198.51.100.14").stdout
    assert "mail.production.test" in lab.net("getent", "hosts", "2001:db8:51::12").stdout
    # Nothing outside the lab resolves: the lab resolver forwards only lab zones.
    assert lab.net("getent", "hosts", "example.com", check=False).returncode != 0


def test_exec_and_net_pass_exit_codes_and_stdio(lab):
    assert lab.exec("trap1", "sh", "-c", "exit 7", check=False).returncode == 7
    assert lab.exec("infra", "cat", input="hello lab\n").stdout == "hello lab\n"
    assert lab.net("sh", "-c", "exit 4", check=False).returncode == 4
    p = labctl(lab, "exec", "mail.staging.test", "--", "sh", "-c", "cat; echo err >&2; exit 5", input="in\n")
    assert (p.returncode, p.stdout, p.stderr) == (5, "in\n", "err\n")
    assert labctl(lab, "net", "--", "sh", "-c", "exit 3").returncode == 3
    assert labctl(lab, "exec", "nosuchhost", "--", "true").returncode != 0


def test_ssh_with_strict_host_keys(lab, tmp_path):
    cfg = lab.status()["ssh_config"]
    assert labctl(lab, "ssh-config").stdout.strip() == cfg
    for h in topology.HOSTS:
        p = subprocess.run(["ssh", "-F", cfg, f"root@{h.ipv4}", "hostname", "-f"],
                           capture_output=True, text=True, timeout=30)
        assert p.stdout.strip() == h.fqdn, p.stderr
    p = subprocess.run(["ssh", "-F", cfg, "root@mail.production.test", "true"], capture_output=True, timeout=30)
    assert p.returncode == 0
    # The same config with a known_hosts that lacks the host's key must refuse to connect.
    bad = tmp_path / "ssh_config"
    bad.write_text(Path(cfg).read_text().replace(lab.status()["known_hosts"], str(tmp_path / "empty")))
    (tmp_path / "empty").write_text("")
    p = subprocess.run(["ssh", "-F", str(bad), "root@198.51.100.12", "true"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and "Host key verification failed" in p.stderr, p.stderr


def test_pyinfra_reaches_every_host_through_the_ssh_config(lab, tmp_path):
    st = lab.status()
    hosts = [(h["name"], {"ssh_hostname": h["ipv4"], "ssh_config_file": st["ssh_config"],
                          "ssh_known_hosts_file": st["known_hosts"], "ssh_strict_host_key_checking": "yes"})
             for h in st["hosts"]]
    inv = tmp_path / "inventory.py"
    inv.write_text(f"lab = {hosts!r}\n")
    p = subprocess.run([PYINFRA, "-y", str(inv), "exec", "--", "hostname", "-f"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    for h in topology.HOSTS:
        assert f"[{h.fqdn}] {h.fqdn}" in " ".join((p.stdout + p.stderr).split()), p.stdout + p.stderr


def test_status_document(lab):
    p = labctl(lab, "status", "--json")
    assert p.returncode == 0
    st = json.loads(p.stdout)
    assert st["lab_id"] == lab.lab_id and st["up"] is True
    by_short = {h["short"]: h for h in st["hosts"]}
    assert by_short["trap1"]["spamtrap_position"] == "first"
    assert by_short["trap2"]["spamtrap_position"] == "last"
    assert by_short["mail-staging"] == {
        "name": "mail.staging.test", "short": "mail-staging", "roles": ["mailservers"],
        "environment": "staging", "spamtrap_position": None, "ipv4": "198.51.100.11",
        "ipv6": "2001:db8:51::11", "running": True}
    assert by_short["infra"]["environment"] is None
    users = {u["address"]: u["password"] for d in st["domains"] for u in d["users"]}
    assert set(users) == {"alice@staging.test", "bob@staging.test",
                          "alice@production.test", "bob@production.test"}
    assert all(len(pw) >= 16 for pw in users.values())
    for f in (Path(st["state_dir"]) / "users.json", Path(st["pdns"]["api_key_file"]), Path(st["tsig_file"]),
              Path(st["ssh_key"])):
        assert f.stat().st_mode & 0o077 == 0, f"{f} is readable by others"
    assert json.loads((Path(st["state_dir"]) / "users.json").read_text()) == users


def test_second_up_changes_nothing_and_is_fast(lab):
    start = time.monotonic()
    lab.up()
    assert time.monotonic() - start < 5
    st = json.loads((lab.state_dir / "state.json").read_text())
    assert st["last_up"]["changed"] == []
    assert "password" not in json.dumps(st["domains"])


def test_hosts_install_packages_through_the_lab_apt_cache(lab):
    p = lab.exec("trap2", "apt-get", "update", check=False, timeout=120)
    assert p.returncode == 0 and "Err:" not in p.stdout, p.stdout + p.stderr
    proxy = lab.exec("trap2", "apt-config", "dump", "Acquire::http::Proxy").stdout
    assert "198.51.100.1:3142" in proxy


def test_powerdns_api_zones_and_tsig_updates(lab):
    """The lab's DNS provider: zones made through the API, TSIG-signed RFC 2136 updates to rfc2136.test."""
    st = lab.status()
    key = Path(st["pdns"]["api_key_file"]).read_text().strip()
    code = r"""
import json, sys, urllib.request
import dns.query, dns.rcode, dns.resolver, dns.tsigkeyring, dns.update
api_url, key, tsig = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
req = urllib.request.Request(api_url + "/api/v1/servers/localhost/zones", headers={"X-API-Key": key})
zones = sorted(z["name"] for z in json.load(urllib.request.urlopen(req, timeout=10)))
kr = dns.tsigkeyring.from_text({tsig["name"]: (tsig["algorithm"], tsig["secret"])})
def update(zone, keyring):
    kw = dict(keyring=keyring, keyname=tsig["name"], keyalgorithm=tsig["algorithm"]) if keyring else {}
    u = dns.update.Update(zone, **kw)
    u.replace("labtest-probe", 60, "TXT", '"probe"')
    return dns.rcode.to_text(dns.query.tcp(u, "198.51.100.10", timeout=5).rcode())
signed, unsigned, other = update("rfc2136.test.", kr), update("rfc2136.test.", None), update("staging.test.", kr)
r = dns.resolver.Resolver(configure=False); r.nameservers = ["198.51.100.1"]
txt = [x.to_text() for x in r.resolve("labtest-probe.rfc2136.test", "TXT")]
u = dns.update.Update("rfc2136.test.", keyring=kr, keyname=tsig["name"], keyalgorithm=tsig["algorithm"])
u.delete("labtest-probe"); dns.query.tcp(u, "198.51.100.10", timeout=5)
soa = r.resolve("staging.test", "SOA")[0].to_text()
print(json.dumps({"zones": zones, "signed": signed, "unsigned": unsigned, "other": other, "txt": txt, "soa": soa}))
"""
    p = lab.net(sys.executable, "-c", code, st["pdns"]["api_url"], key, st["tsig_file"], timeout=60)
    res = json.loads(p.stdout)
    assert res["zones"] == sorted(topology.ZONES)
    assert (res["signed"], res["unsigned"], res["other"]) == ("NOERROR", "REFUSED", "REFUSED")
    assert res["txt"] == ['"probe"']
    assert res["soa"].startswith("infra.lab.test. ")


def test_restart_keeps_the_host_disk(lab):
    lab.exec("trap2", "sh", "-c", "echo kept > /var/tmp/labtest-restart")
    before = lab.m.init_pid("trap2")
    p = labctl(lab, "restart", "trap2", timeout=300)
    assert p.returncode == 0, p.stderr
    assert lab.m.init_pid("trap2") != before
    assert lab.exec("trap2", "systemctl", "is-system-running", check=False).stdout.strip() == "running"
    assert lab.exec("trap2", "cat", "/var/tmp/labtest-restart").stdout == "kept\n"
    assert lab.is_up()
    lab.exec("trap2", "rm", "/var/tmp/labtest-restart")


def test_no_lab_route_or_address_in_the_root_namespace(lab):
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    routes += subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout
    addrs = subprocess.run(["ip", "addr"], capture_output=True, text=True).stdout
    assert "198.51.100." not in routes + addrs and "2001:db8:51:" not in routes + addrs


# ---------------- a second lab, broken from outside ----------------

def _lab_leftovers(lab: Lab) -> list[str]:
    n = lab.names
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    found += [f"netns {x}" for x in netns if x == n.netns or x.startswith(f"{lab.lab_id}-")]
    found += [f"mount {line.split()[4]}" for line in open("/proc/self/mountinfo")
              if line.split()[4].startswith(n.run_dir)]
    for pid in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue
        if n.run_dir in argv or f"--machine={lab.lab_id}-" in argv:
            found.append(f"process {pid} {argv[:80]!r}")
    for root in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        found += [f"cgroup {p}" for p in Path(root).glob(f"mailstead-{lab.lab_id}-*")]
    found += [f"path {p}" for p in (n.run_dir, n.etc_netns_dir) if Path(p).exists()]
    return found


def _kill_lab_processes(lab: Lab) -> int:
    """SIGKILL this lab's nspawn, dnsmasq and socat processes, as an outside accident would."""
    killed = 0
    for pid in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue
        if any(a.startswith(f"--machine={lab.lab_id}-") for a in argv) or any(lab.names.run_dir in a for a in argv):
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    return killed


def test_half_up_lab_recovers_and_tears_down_clean(lab):
    # Its id derives from the session lab's, so concurrent sessions (distinct lab ids) never share it,
    # and its keys in .lab/<id>/ are reused by the next run.
    other = Lab(f"{lab.lab_id[:6]}rc")
    assert other.lab_id != lab.lab_id
    try:
        other.up()
        assert other.is_up()
        # Break it from outside: kill its processes, delete one host's netns, leave pid/state files.
        assert _kill_lab_processes(other) >= len(topology.HOSTS) + 3
        subprocess.run(["ip", "netns", "del", other.names.host_netns("trap1")], check=True)
        time.sleep(0.5)
        assert not other.is_up()
        assert labctl(other, "status").returncode == 3
        assert lab.is_up(), "breaking another lab id must not touch the session lab"

        start = time.monotonic()
        other.up()
        recovery = time.monotonic() - start
        assert other.is_up()
        for h in topology.HOSTS:
            assert other.exec(h.short, "systemctl", "is-system-running", "--wait",
                              timeout=60, check=False).stdout.strip() == "running"
        assert "198.51.100.13" in other.net("getent", "ahostsv4", "trap1.production.test").stdout
        print(f"recovery up: {recovery:.1f}s")

        # Half-dead again, then down: nothing of it may remain.
        _kill_lab_processes(other)
        other.down()
        assert _lab_leftovers(other) == []
        assert labctl(other, "status").returncode == 3
        assert lab.is_up(), "the other lab's down must leave the session lab (and the apt cache) running"
        # Keys and users survive down.
        assert (other.state_dir / "users.json").exists() and other.ssh_key.exists()
    finally:
        other.down()


def test_lab_passwords_cannot_be_mistaken_for_command_line_options(lab):
    """swaks and friends take a password starting with '-' for an option (a CI run failed that way)."""
    passwords = [u["password"] for d in lab.status()["domains"] for u in d["users"]]
    assert passwords and all(p and p[0].isalnum() and len(p) >= 16 for p in passwords)
