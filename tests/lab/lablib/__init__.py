"""The mailstead lab: booted Debian 13 systemd-nspawn hosts on this machine.

Python API (used by tests/lab/conftest.py and tests/lab/labctl):

    lab = Lab()              # lab id from $MAILSTEAD_LAB_ID, default 'lab'
    lab.up(); lab.is_up(); lab.status()  # -> dict (the `labctl status --json` document)
    lab.exec("mail-prod", "getent", "hosts", "mail.staging.test")   # -> CompletedProcess (text)
    lab.net("swaks", "--server", "198.51.100.12", ...)             # from the lab's outside world
    lab.restart("mail-prod"); lab.rebuild("mail-staging")          # same disk / a fresh disk, same identity
    lab.down()
"""
from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

_LAB_DIR = Path(__file__).resolve().parent.parent          # tests/lab
if str(_LAB_DIR) not in sys.path:
    sys.path.insert(0, str(_LAB_DIR))

import topology  # noqa: E402

from . import aptcache, guard, image, infralayer, worldca  # noqa: E402
from .machines import Machines, netns_delete, netns_exists  # noqa: E402
from .util import (LabError, Timer, flock, log, proc_snapshot, read_json, run, stop_pids,  # noqa: E402
                   write_file, write_json)

REPO_DIR = _LAB_DIR.parent.parent
__all__ = ["Lab", "LabError", "topology"]


INOTIFY_INSTANCES = 8192


def raise_inotify_limit() -> None:
    """Every container's systemd and daemons share root's inotify instances (default 128): with a few labs
    up, units fail with "Failed to allocate inotify fd: Too many open files". Raise the limit, never lower it."""
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    if int(knob.read_text()) < INOTIFY_INSTANCES:
        knob.write_text(str(INOTIFY_INSTANCES))


def new_password() -> str:
    """A random lab password that command-line tools cannot mistake for an option (no leading '-')."""
    while True:
        pw = secrets.token_urlsafe(18)
        if usable_password(pw):
            return pw


def usable_password(pw) -> bool:
    return isinstance(pw, str) and len(pw) >= 16 and pw[0].isalnum()


class Lab:
    def __init__(self, lab_id: str | None = None, state_root: Path | None = None):
        self.lab_id = topology.lab_id(lab_id)
        self.names = topology.Names(self.lab_id)
        self.state_dir = Path(state_root or REPO_DIR / ".lab") / self.lab_id
        self.m = Machines(self.names, self.state_dir)

    # ---------------- files in the state dir ----------------
    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "ssh" / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.state_dir / "ssh" / "config"

    @property
    def users_file(self) -> Path:
        return self.state_dir / "users.json"

    @property
    def api_key_file(self) -> Path:
        return self.state_dir / "pdns-api-key"

    @property
    def tsig_file(self) -> Path:
        return self.state_dir / "tsig.json"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _ensure_secrets(self) -> None:
        """Made once per lab id, kept across down/up (0600, under the gitignored .lab/)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        if not self.ssh_key.exists():
            self.ssh_key.parent.mkdir(mode=0o700, exist_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mailstead-lab-{self.lab_id}",
                 "-f", self.ssh_key])
        users = read_json(self.users_file, {}) or {}
        want = [a for d in topology.DOMAINS for a in d.addresses]
        if any(not usable_password(users.get(a)) for a in want):
            for a in want:
                if not usable_password(users.get(a)):
                    users[a] = new_password()
            write_json(self.users_file, users, 0o600)
        if not self.api_key_file.exists():
            write_file(self.api_key_file, secrets.token_hex(24) + "\n", 0o600)
        if not read_json(self.tsig_file):
            write_json(self.tsig_file, {"name": topology.TSIG_KEY_NAME, "algorithm": topology.TSIG_ALGORITHM,
                                        "secret": base64.b64encode(os.urandom(32)).decode()}, 0o600)

    def _write_ssh_files(self) -> None:
        lines = []
        for h in topology.HOSTS:
            for key in self.m.host_public_keys(h.short):
                lines.append(f"{h.fqdn},{h.ipv4},{h.ipv6} {key}")
        write_file(self.known_hosts, "\n".join(lines) + "\n", 0o644)
        common = (f"  User root\n  IdentityFile {self.ssh_key}\n  IdentitiesOnly yes\n"
                  f"  UserKnownHostsFile {self.known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
                  "  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n")
        ns = self.names.netns
        write_file(self.ssh_config,
                   f"# mailstead lab '{self.lab_id}': generated by tests/lab/labctl\n"
                   f"Host 198.51.100.* *.test\n{common}"
                   f"  ProxyCommand ip netns exec {ns} socat - TCP:%h:%p\n\n"
                   f"Host 2001:db8:51:*\n{common}"
                   f"  ProxyCommand ip netns exec {ns} socat - TCP6:[%h]:%p\n", 0o644)

    # ---------------- queries ----------------
    def running_hosts(self) -> dict[str, bool]:
        return {h.short: self.m.host_ok(h.short) for h in topology.HOSTS}

    def services_ok(self) -> dict[str, bool]:
        bridges = self.m.bridge_pids()
        port = self.m.bridge_target_port()
        return {
            "netns": self.m.gateway_ok(),
            "dnsmasq": bool(self.m.dnsmasq_pids()),
            "apt_bridge": bool(bridges["root"] and bridges["netns"]),
            "apt_cache": port is not None and port == aptcache.apt_cache_port(),
        }

    def is_up(self) -> bool:
        with proc_snapshot():
            return all(self.running_hosts().values()) and all(self.services_ok().values())

    def status(self) -> dict:
        with proc_snapshot():
            return self._status()

    def _status(self) -> dict:
        running = self.running_hosts()
        services = self.services_ok()
        users = read_json(self.users_file, {}) or {}
        return {
            "lab_id": self.lab_id,
            "state_dir": str(self.state_dir),
            "ssh_config": str(self.ssh_config),
            "known_hosts": str(self.known_hosts),
            "ssh_key": str(self.ssh_key),
            "hosts": [{"name": h.fqdn, "short": h.short, "roles": list(h.roles),
                       "environment": h.environment, "spamtrap_position": h.spamtrap_position,
                       "ipv4": h.ipv4, "ipv6": h.ipv6, "running": running[h.short]}
                      for h in topology.HOSTS],
            "domains": [{"domain": d.domain, "environment": d.environment,
                         "users": [{"address": a, "password": users.get(a)} for a in d.addresses]}
                        for d in topology.DOMAINS],
            "pdns": {"api_url": topology.PDNS_API_URL, "api_key_file": str(self.api_key_file)},
            "tsig_file": str(self.tsig_file),
            "acme": {"directory": topology.ACME_DIRECTORY, "ca_bundle": str(worldca.ca_dir(self.state_dir) / "ca.pem"),
                     "root_file": str(self.pebble_root_file), "management_url": topology.ACME_MANAGEMENT_URL},
            "gateway": {"ipv4": topology.GATEWAY_V4, "ipv6": topology.GATEWAY_V6},
            "services": services,
            "up": all(running.values()) and all(services.values()),
        }

    # ---------------- commands ----------------
    def exec(self, host: str, *cmd, input=None, check=True, timeout=None, env=None):
        h = topology.host(host)
        argv = self.m.exec_argv(h.short, [str(c) for c in cmd], env=env)
        return subprocess.run(argv, input=input, text=True, capture_output=True, timeout=timeout,
                              check=check)

    def net_argv(self, cmd) -> list[str]:
        if not netns_exists(self.names.netns):
            raise LabError(f"lab {self.lab_id} is not up (no netns {self.names.netns})")
        return ["ip", "netns", "exec", self.names.netns, *[str(c) for c in cmd]]

    def net(self, *cmd, input=None, check=True, timeout=None):
        return subprocess.run(self.net_argv(cmd), input=input, text=True, capture_output=True,
                              timeout=timeout, check=check)

    def ssh(self, host: str, *cmd, check=True, timeout=60):
        h = topology.host(host)
        return subprocess.run(["ssh", "-F", str(self.ssh_config), f"root@{h.ipv4}", "--", *cmd],
                              text=True, capture_output=True, timeout=timeout, check=check)

    # ---------------- up ----------------
    def up(self) -> dict:
        t0 = time.monotonic()
        with flock(aptcache.lab_lock_path(self.lab_id)):
            t = Timer("up")
            if t.t0 - t0 > 1:
                log(f"up: waited {t.t0 - t0:.1f}s for another up/down of lab '{self.lab_id}'")
            if aptcache.ensure_host_packages():
                t.step("host packages")
            if guard.ensure():
                t.step("root-namespace guard (nothing there may send to a lab prefix)")
            self._ensure_secrets()
            if self.is_up() and self._infra_ready():
                self._write_ssh_files()
                self.m.ensure_outside_alt()
                t.step("already up")
                self._write_state(self._up_record(t, []))
                return self.status()
            changed = []
            raise_inotify_limit()
            Path(self.names.run_dir).mkdir(parents=True, exist_ok=True)
            port, cache_started = aptcache.ensure_apt_cache(self.lab_id)
            if cache_started:
                changed.append("apt cache")
            t.step("apt cache")
            mirrors = aptcache.mirrors()
            base = image.ensure_base(mirrors, port)
            t.step("base image")
            if not self.m.gateway_ok():
                # A broken or missing gateway namespace: every host hangs off it, start over.
                self._stop_all(wipe=False)
                Path(self.names.run_dir).mkdir(parents=True, exist_ok=True)
                self.m.create_gateway()
                changed.append("network")
            if self.m.ensure_outside_alt():
                changed.append("outside address")
            if not self.m.dnsmasq_pids():
                self.m.start_dnsmasq()
                changed.append("dnsmasq")
            br = self.m.bridge_pids()
            if not (br["root"] and br["netns"]) or self.m.bridge_target_port() != port:
                self.m.start_bridges(port)
                changed.append("apt bridge")
            t.step("network")
            pubkey = self.ssh_key.with_suffix(".pub").read_text()
            with concurrent.futures.ThreadPoolExecutor(len(topology.HOSTS)) as pool:
                list(pool.map(self.m.host_public_keys, [h.short for h in topology.HOSTS]))
            started = []
            for h in topology.HOSTS:
                if not self.m.host_ok(h.short):
                    self.m.start_host(h, self._layers(h, base, port), pubkey)
                    started.append(h.short)
            if started:
                changed.append("hosts " + " ".join(started))
            self._write_ssh_files()
            t.step(f"boot {len(started)} hosts")
            self._wait_ready(started or [h.short for h in topology.HOSTS])
            t.step("hosts ready (ssh + running)")
            res = self._provision_infra()
            if res:
                changed.append("infra: " + ", ".join(res))
            t.step("infra (PowerDNS, NTS, pebble)")
            self._write_state(self._up_record(t, changed))
            log(f"up: lab '{self.lab_id}' ready in {t.total():.1f}s ({'; '.join(changed) or 'nothing changed'})")
            return self.status()

    @staticmethod
    def _layers(h: topology.Host, base: Path, apt_port: int) -> list[Path]:
        if h.short == topology.INFRA:
            layer = infralayer.ensure_layer(base, apt_port)
            if layer:
                return [layer, base]
        return [base]

    def restart(self, host: str) -> None:
        """Power-cycle one host: a clean halt, then a boot on the same disk (its overlay upper layer).
        (A `reboot` inside a host ends its nspawn: use this, or `labctl up`, to bring it back.)"""
        self._reboot(host, wipe=False)

    def rebuild(self, host: str) -> float:
        """Rebuild one host from scratch: stop it (running or not), wipe its disk changes (the overlay upper
        layer), boot it from the pristine base image with the same name, addresses, machine id and SSH host
        keys (known_hosts stays valid), and wait until it answers SSH and is running. Returns the seconds taken.
        Everything a deploy put there is gone (rebuilding infra re-provisions PowerDNS with the seed zones)."""
        took = self._reboot(host, wipe=True)
        log(f"rebuild: {topology.host(host).short} booted fresh from the base image in {took:.1f}s")
        return took

    def _reboot(self, host: str, wipe: bool) -> float:
        h = topology.host(host)
        with flock(aptcache.lab_lock_path(self.lab_id)):
            t = Timer(f"{'rebuild' if wipe else 'restart'} {h.short}")
            if not self.m.gateway_ok():
                raise LabError(f"lab {self.lab_id} is not up: run labctl up")
            port = aptcache.apt_cache_port() or aptcache.ensure_apt_cache(self.lab_id)[0]
            base = image.ensure_base(aptcache.mirrors(), port)
            self.m.stop_host(h.short, wipe=wipe)
            if wipe and (self.m.var_dir / h.short).exists():
                raise LabError(f"{h.short}: could not wipe its disk {self.m.var_dir / h.short}")
            t.step("stop" + (" + wipe" if wipe else ""))
            self.m.start_host(h, self._layers(h, base, port), self.ssh_key.with_suffix(".pub").read_text())
            self._wait_ready([h.short])
            t.step("boot (ssh + running)")
            if h.short == topology.INFRA:
                self._provision_infra()
                t.step("infra (PowerDNS, NTS, pebble)")
            return t.total()

    def _wait_ready(self, shorts, timeout=120) -> None:
        def one(short):
            h = topology.host(short)
            deadline = time.monotonic() + timeout
            while True:
                p = subprocess.run(["ssh", "-F", str(self.ssh_config), "-o", "ConnectTimeout=3",
                                    f"root@{h.ipv4}", "true"], capture_output=True, text=True)
                if p.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise LabError(f"{short}: no SSH after {timeout}s: {p.stderr.strip()[-300:]}\n"
                                   + self._diagnose(short))
                time.sleep(0.3)
            left = max(5, deadline - time.monotonic())
            try:
                p = self.exec(short, "systemctl", "is-system-running", "--wait", check=False, timeout=left)
                state = p.stdout.strip()
            except subprocess.TimeoutExpired:
                state = f"still starting after {timeout}s"
            if state != "running":
                failed = self.exec(short, "systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
                log(f"WARNING {short}: system state {state!r}; failed units:\n{failed}")
            return state

        with concurrent.futures.ThreadPoolExecutor(len(shorts)) as pool:
            list(pool.map(one, shorts))

    def _diagnose(self, short: str) -> str:
        out = [f"--- console {self.m.console_log(short)} (last lines):"]
        try:
            out += self.m.console_log(short).read_text(errors="replace").splitlines()[-25:]
        except FileNotFoundError:
            out.append("(missing)")
        if self.m.init_pid(short):
            p = self.exec(short, "sh", "-c", "systemctl is-system-running; systemctl --failed --no-legend; "
                          "systemctl status --no-pager -n 15 ssh", check=False, timeout=20)
            out += ["--- inside:", p.stdout[-3000:], p.stderr[-500:]]
        else:
            out.append("--- the host's init is not running")
        return "\n".join(out)

    def _pdns_config(self) -> dict:
        zones = {z: [] for z in topology.ZONES}

        def add(zone, name, rtype, content):
            for rr in zones[zone]:
                if rr["name"] == name and rr["type"] == rtype:
                    rr["records"].append({"content": content, "disabled": False})
                    return
            zones[zone].append({"name": name, "type": rtype, "ttl": 300, "changetype": "REPLACE",
                                "records": [{"content": content, "disabled": False}]})

        for h in topology.HOSTS:
            zone = next(z for z in topology.FORWARD_ZONES if (h.fqdn + ".").endswith("." + z))
            add(zone, h.fqdn + ".", "A", h.ipv4)
            add(zone, h.fqdn + ".", "AAAA", h.ipv6)
            add(topology.REVERSE_ZONE_V4, topology.reverse_name_v4(h.ipv4), "PTR", h.fqdn + ".")
            add(topology.REVERSE_ZONE_V6, topology.reverse_name_v6(h.ipv6), "PTR", h.fqdn + ".")
        infra = topology.host(topology.INFRA)
        return {
            "api_key": self.api_key_file.read_text().strip(),
            "tsig": read_json(self.tsig_file),
            "listen": [infra.ipv4, infra.ipv6, "127.0.0.1", "::1"],
            "allow_from": [topology.PREFIX_V4, "127.0.0.0/8"],
            "dnsupdate_from": [topology.PREFIX_V4, topology.PREFIX_V6],
            "nameserver": topology.NAMESERVER,
            "soa": f"{topology.NAMESERVER} hostmaster.lab.test. 0 10800 3600 604800 3600",
            "zones": zones,
            "dynamic_zone": topology.DYNAMIC_UPDATE_ZONE,
        }

    def _provision_infra(self) -> list[str]:
        """The outside world's services on infra: PowerDNS, the NTS time server, the ACME CA (pebble)."""
        changed = self._run_on_infra("pdns_provision.py", self._pdns_config(), "PowerDNS")
        changed += self._run_on_infra("nts_provision.py", self._nts_config(), "the NTS server")
        return changed + self.provision_pebble()

    @property
    def pebble_root_file(self) -> Path:
        """pebble's current issuing root (PEM), fetched at every provisioning; it changes when pebble restarts."""
        return self.state_dir / "pebble-root.pem"

    def provision_pebble(self) -> list[str]:
        """Install/configure/start pebble on infra (idempotent) and save its current root in pebble_root_file."""
        infra = topology.host(topology.INFRA)
        cert, key = worldca.ensure_leaf(self.state_dir, "infra-acme", [infra.fqdn])
        res = self._run_on_infra("pebble_provision.py", {"cert": cert, "key": key,
                                                         "dns_server": f"{topology.GATEWAY_V4}:53"},
                                 "the ACME CA (pebble)", full=True)
        write_file(self.pebble_root_file, res["root"], 0o644)
        return res["changed"]

    def _nts_config(self) -> dict:
        infra = topology.host(topology.INFRA)
        cert, key = worldca.ensure_leaf(self.state_dir, infra.short, [infra.fqdn])
        return {"cert": cert, "key": key, "allow": [topology.PREFIX_V4, topology.PREFIX_V6]}

    def _run_on_infra(self, script_name: str, config: dict, what: str, full: bool = False):
        """Run a stdlib provisioning script inside infra with its JSON config on stdin; its changes
        (``full``: the whole JSON document it printed)."""
        script = (Path(__file__).parent / script_name).read_text()
        p = self.exec(topology.INFRA, "python3", "-c", script, input=json.dumps(config), check=False, timeout=600)
        if p.returncode != 0:
            raise LabError(f"provisioning {what} on infra failed:\n{p.stdout[-2000:]}{p.stderr[-3000:]}")
        doc = json.loads(p.stdout.strip().splitlines()[-1])
        return doc if full else doc["changed"]

    def _infra_ready(self) -> bool:
        """Cheap check that PowerDNS answers with our key and has every zone, and the NTS server runs."""
        key = self.api_key_file.read_text().strip()
        code = ("import json,sys,urllib.request as u\n"
                "r=u.Request('http://127.0.0.1:8081/api/v1/servers/localhost/zones',"
                "headers={'X-API-Key':sys.stdin.read().strip()})\n"
                "print(json.dumps(sorted(z['name'] for z in json.load(u.urlopen(r,timeout=5)))))")
        try:
            p = self.exec(topology.INFRA, "python3", "-c", code, input=key, check=False, timeout=20)
            if not (p.returncode == 0 and set(topology.ZONES) <= set(json.loads(p.stdout))):
                return False
            nts = self.exec(topology.INFRA, "systemctl", "is-active", "chrony", "pebble", check=False, timeout=20)
            return (nts.stdout.split() == ["active", "active"] and self.pebble_root_file.exists()
                    and (worldca.ca_dir(self.state_dir) / "ca.pem").exists())
        except (LabError, ValueError, subprocess.TimeoutExpired):
            return False

    def _write_state(self, extra: dict) -> None:
        """state.json: the status document without passwords (they stay in users.json), plus extra."""
        with proc_snapshot():
            self._write_state_now(extra)

    def _write_state_now(self, extra: dict) -> None:
        st = self.status()
        for d in st["domains"]:
            for u in d["users"]:
                u.pop("password", None)
        st["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        st["apt_cache_port"] = aptcache.apt_cache_port()
        st["pids"] = {   # informational: labctl finds its processes by their lab-specific arguments
            "nspawn": {h.short: self.m.nspawn_pids(h.short) for h in topology.HOSTS},
            "init": {h.short: self.m.init_pid(h.short) for h in topology.HOSTS},
            "dnsmasq": self.m.dnsmasq_pids(),
            "apt_bridge": self.m.bridge_pids(),
        }
        st.update(extra)
        write_json(self.state_file, st, 0o600)

    def _up_record(self, t: Timer, changed) -> dict:
        return {"base_image": image.cache_key(aptcache.mirrors()),
                "last_up": {"timings": t.as_dict(), "changed": changed}}

    # ---------------- down ----------------
    def _stop_all(self, wipe: bool) -> None:
        with concurrent.futures.ThreadPoolExecutor(len(topology.HOSTS)) as pool:
            list(pool.map(lambda h: self.m.stop_host(h.short, wipe=wipe), topology.HOSTS))
        br = self.m.bridge_pids()
        stop_pids(self.m.dnsmasq_pids() + br["root"] + br["netns"])
        self.m.release_roots()
        netns_delete(self.names.netns)
        shutil.rmtree(self.names.etc_netns_dir, ignore_errors=True)
        shutil.rmtree(self.names.run_dir, ignore_errors=True)

    def down(self) -> None:
        t = Timer("down")
        with flock(aptcache.lab_lock_path(self.lab_id)):
            self._stop_all(wipe=True)
            shutil.rmtree(self.m.var_dir, ignore_errors=True)
            t.step("hosts and network")
            aptcache.release_apt_cache(self.lab_id)
            t.step("apt cache")
            if self.state_file.exists():
                self._write_state({})
            if guard.remove_if_last():
                t.step("root-namespace guard removed (no lab left)")
        log(f"down: lab '{self.lab_id}' stopped in {t.total():.1f}s")
