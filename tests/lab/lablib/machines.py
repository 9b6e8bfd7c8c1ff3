"""Network namespaces, the lab's gateway services (dnsmasq, apt bridge) and the booted hosts.

Every process here is found again by an argument that names this lab (its run dir or machine
name), so stale pid files cannot mislead `up`/`down`, and processes are ended by PID.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import time
from pathlib import Path

import topology  # tests/lab/topology.py, put on sys.path by lablib/__init__.py
from .util import (VAR_DIR, LabError, alive, children, find_procs, proc_argv, run, spawn, stop_pids,
                   write_file)

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def netns_delete(name: str) -> None:
    if netns_exists(name):
        p = run(["ip", "netns", "del", name], check=False)
        if p.returncode != 0 and netns_exists(name):
            raise LabError(f"cannot delete netns {name}: {p.stderr.strip()}")


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def umount(path: Path) -> None:
    while mounted(path):
        if run(["umount", path], check=False).returncode != 0:
            run(["umount", "-l", path], check=False)
            break


class Machines:
    def __init__(self, names: topology.Names, state_dir: Path):
        self.n = names
        self.state_dir = state_dir
        self.run_dir = Path(names.run_dir)
        self.var_dir = VAR_DIR / names.lab_id
        self.log_dir = state_dir / "logs"      # kept after down, for post-mortems

    def console_log(self, short: str) -> Path:
        return self.log_dir / f"console-{short}.log"

    # ---------------- gateway namespace ----------------
    def gateway_ok(self) -> bool:
        if not netns_exists(self.n.netns):
            return False
        p = run(["ip", "-n", self.n.netns, "-o", "addr", "show", "dev", "br0"], check=False)
        return f" {topology.GATEWAY_V4}/24 " in p.stdout and f" {topology.GATEWAY_V6}/64 " in p.stdout

    def ensure_outside_alt(self) -> bool:
        """The outside world's further addresses (a lab up before they existed gets them without a restart)."""
        p = run(["ip", "-n", self.n.netns, "-o", "addr", "show", "dev", "br0"], check=False)
        missing = [a for a in (topology.OUTSIDE_ALT_V4, *topology.OUTSIDE_POOL_V4) if f" {a}/24 " not in p.stdout]
        for addr in missing:
            run(["ip", "-n", self.n.netns, "addr", "add", f"{addr}/24", "dev", "br0"])
        return bool(missing)

    def create_gateway(self) -> None:
        ns = self.n.netns
        netns_delete(ns)
        run(["ip", "netns", "add", ns])
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "br0", "type", "bridge"],
                    ["addr", "add", f"{topology.GATEWAY_V4}/24", "dev", "br0"],
                    ["addr", "add", f"{topology.GATEWAY_V6}/64", "dev", "br0", "nodad"],
                    ["link", "set", "br0", "up"]):
            run(["ip", "-n", ns, *cmd])
        write_file(Path(self.n.etc_netns_dir) / "resolv.conf", f"nameserver {topology.GATEWAY_V4}\n")

    # ---------------- gateway services ----------------
    def _in_gateway(self) -> list[str]:
        """Enter only the gateway's network namespace. Long-lived daemons must not run under
        `ip netns exec`: its private mount namespace would pin copies of every lab's overlay mounts."""
        return ["nsenter", f"--net=/run/netns/{self.n.netns}", "--"]

    def _dnsmasq_conf(self) -> Path:
        return self.run_dir / "dnsmasq.conf"

    def dnsmasq_pids(self) -> list[int]:
        marker = f"--conf-file={self._dnsmasq_conf()}"
        return find_procs(lambda a: "dnsmasq" in a[0] and marker in a)

    def start_dnsmasq(self) -> int:
        stop_pids(self.dnsmasq_pids())
        pdns = topology.PDNS_HOST
        zones = ["test", topology.REVERSE_ZONE_V4.rstrip("."), topology.REVERSE_ZONE_V6.rstrip(".")]
        write_file(self._dnsmasq_conf(), "\n".join([
            f"listen-address={topology.GATEWAY_V4}", f"listen-address={topology.GATEWAY_V6}",
            "bind-interfaces", "no-resolv", "no-hosts", "cache-size=0", "user=root", "group=root",
            "pid-file=", *[f"server=/{z}/{pdns}" for z in zones], ""]))
        return spawn([*self._in_gateway(), "dnsmasq", "--keep-in-foreground",
                      f"--conf-file={self._dnsmasq_conf()}"], self.log_dir / "dnsmasq.log")

    def _apt_sock(self) -> Path:
        return self.run_dir / "apt.sock"

    def bridge_pids(self) -> dict[str, list[int]]:
        sock = str(self._apt_sock())
        return {
            "root": find_procs(lambda a: "socat" in a[0] and any(x.startswith(f"UNIX-LISTEN:{sock},") for x in a)),
            "netns": find_procs(lambda a: "socat" in a[0] and f"UNIX-CONNECT:{sock}" in a),
        }

    def start_bridges(self, apt_port: int) -> None:
        """198.51.100.1:3142 in the lab netns → unix socket → 127.0.0.1:<apt cache port>."""
        pids = self.bridge_pids()
        stop_pids(pids["root"] + pids["netns"])
        self._apt_sock().unlink(missing_ok=True)
        spawn(["socat", f"UNIX-LISTEN:{self._apt_sock()},fork,mode=600", f"TCP:127.0.0.1:{apt_port}"],
              self.log_dir / "apt-bridge.log")
        deadline = time.monotonic() + 5
        while not self._apt_sock().exists():
            if time.monotonic() > deadline:
                raise LabError("apt bridge socket did not appear")
            time.sleep(0.02)
        spawn([*self._in_gateway(), "socat",
               f"TCP-LISTEN:{topology.APT_PROXY_PORT},bind={topology.GATEWAY_V4},reuseaddr,fork",
               f"UNIX-CONNECT:{self._apt_sock()}"], self.log_dir / "apt-bridge.log")

    def bridge_target_port(self) -> int | None:
        for pid in self.bridge_pids()["root"]:
            for a in (x for x in (proc_argv(pid) or []) if x.startswith("TCP:127.0.0.1:")):
                return int(a.rsplit(":", 1)[1])
        return None

    # ---------------- hosts ----------------
    def mountpoint(self, short: str) -> Path:
        return self.run_dir / "root" / short

    def _ensure_shared_roots(self) -> None:
        """Host roots live under a shared bind mount: namespaces copied from ours (`ip netns exec`,
        nspawn) then receive our unmounts instead of pinning stale copies of the overlays."""
        roots = self.run_dir / "root"
        roots.mkdir(parents=True, exist_ok=True)
        if not mounted(roots):
            if any(mounted(p) for p in roots.iterdir()):
                return  # hosts booted by an older labctl: a bind now would hide them; fixed at down/up
            run(["mount", "--bind", roots, roots])
        run(["mount", "--make-shared", roots])

    def release_roots(self) -> None:
        umount(self.run_dir / "root")

    def cgroup_dirs(self, short: str) -> list[Path]:
        name = self.n.cgroup(short)
        roots = [Path(p) for p in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified") if Path(p).is_dir()]
        if not roots:
            roots = [Path("/sys/fs/cgroup")]
        return [r / name for r in roots]

    def nspawn_pids(self, short: str) -> list[int]:
        marker = f"--machine={self.n.machine(short)}"
        return find_procs(lambda a: a[0].endswith("systemd-nspawn") and marker in a)

    def init_pid(self, short: str) -> int | None:
        """The container's PID 1 (the child of its nspawn process)."""
        own = os.readlink("/proc/self/ns/pid")
        for nspawn in self.nspawn_pids(short):
            for child in children(nspawn):
                with contextlib.suppress(FileNotFoundError):
                    if os.readlink(f"/proc/{child}/ns/pid") != own and alive(child):
                        return child
        return None

    def host_ok(self, short: str) -> bool:
        return (self.init_pid(short) is not None and mounted(self.mountpoint(short))
                and netns_exists(self.n.host_netns(short)))

    def _cgroup_pids(self, short: str) -> list[int]:
        pids = set()
        for d in self.cgroup_dirs(short):
            if d.is_dir():
                for procs in d.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        pids |= {int(x) for x in procs.read_text().split()}
        return sorted(pids)

    def stop_host(self, short: str, wipe: bool = False) -> None:
        """Stop one host and remove its pieces; works on half-dead hosts too."""
        nspawn = self.nspawn_pids(short)
        if nspawn:
            stop_pids(nspawn, timeout=15)
        # Processes left in the host's cgroup (e.g. its init when nspawn was killed from outside).
        for _ in range(50):
            pids = self._cgroup_pids(short)
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.1)
        umount(self.mountpoint(short))
        netns_delete(self.n.host_netns(short))
        for d in self.cgroup_dirs(short):
            if d.is_dir():
                for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    d.rmdir()
        if wipe:
            shutil.rmtree(self.var_dir / short, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.mountpoint(short).rmdir()

    def _host_keys(self, short: str) -> Path:
        """Per-host SSH host keys and machine id, made once per lab id (survive down/up)."""
        d = self.state_dir / "hostkeys" / short
        if not list(d.glob("etc/ssh/ssh_host_*_key.pub")):
            (d / "etc/ssh").mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            run(["ssh-keygen", "-A", "-f", d])
        if not (d / "machine-id").exists():
            write_file(d / "machine-id", os.urandom(16).hex() + "\n", 0o444)
        return d

    def host_public_keys(self, short: str) -> list[str]:
        d = self._host_keys(short)
        return [" ".join(p.read_text().split()[:2]) for p in sorted(d.glob("etc/ssh/ssh_host_*_key.pub"))]

    def start_host(self, h: topology.Host, layers: list[Path], authorized_key: str) -> int:
        """Boot one host on an overlay of `layers` (read-only, topmost first) and its own upper dir."""
        short = h.short
        self.stop_host(short)
        upper, work = self.var_dir / short / "upper", self.var_dir / short / "work"
        mnt = self.mountpoint(short)
        self._ensure_shared_roots()
        for d in (upper, work, mnt):
            d.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "overlay", f"lab-{self.n.machine(short)}", "-o",
             f"lowerdir={':'.join(map(str, layers))},upperdir={upper},workdir={work}", mnt])
        # Host identity, written into the overlay's upper layer.
        keys = self._host_keys(short)
        write_file(mnt / "etc/hostname", h.fqdn + "\n")
        alias = h.fqdn.split(".")[0]
        write_file(mnt / "etc/hosts", f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                   f"{h.ipv4}\t{h.fqdn} {alias}\n{h.ipv6}\t{h.fqdn} {alias}\n")
        write_file(mnt / "etc/machine-id", (keys / "machine-id").read_text(), 0o444)
        for k in (keys / "etc/ssh").glob("ssh_host_*"):
            write_file(mnt / "etc/ssh" / k.name, k.read_bytes(), 0o644 if k.name.endswith(".pub") else 0o600)
        (mnt / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file(mnt / "root/.ssh/authorized_keys", authorized_key.strip() + "\n", 0o600)
        # Network: both veth ends are born inside the lab netns; nothing appears in the root namespace.
        hn, gw = self.n.host_netns(short), self.n.netns
        veth = f"v-{short}"[:15]
        run(["ip", "netns", "add", hn])
        run(["ip", "-n", hn, "link", "set", "lo", "up"])
        run(["ip", "-n", gw, "link", "del", veth], check=False)
        # A fixed MAC per host: after a restart/rebuild the neighbours' ARP/NDP caches still point at the right
        # interface (a new random MAC left them sending to the old one for ~30-40 s).
        run(["ip", "-n", gw, "link", "add", veth, "type", "veth", "peer", "name", "host0",
             "address", self.host_mac(short)])
        run(["ip", "-n", gw, "link", "set", "host0", "netns", hn])
        run(["ip", "-n", gw, "link", "set", veth, "master", "br0", "up"])
        for cmd in (["link", "set", "host0", "name", "eth0"],
                    ["addr", "add", f"{h.ipv4}/24", "dev", "eth0"],
                    ["addr", "add", f"{h.ipv6}/64", "dev", "eth0", "nodad"],
                    ["link", "set", "eth0", "up"],
                    ["route", "add", "default", "via", topology.GATEWAY_V4],
                    ["-6", "route", "add", "default", "via", topology.GATEWAY_V6]):
            run(["ip", "-n", hn, *cmd])
        # Each nspawn in its own cgroup (hybrid hierarchy: named systemd + unified).
        cgroups = self.cgroup_dirs(short)
        for d in cgroups:
            d.mkdir(exist_ok=True)

        def enter_cgroups():
            for d in cgroups:
                with open(d / "cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))

        console = self.console_log(short)
        console.unlink(missing_ok=True)
        pid = spawn(["systemd-nspawn", "--quiet", "--boot", f"--directory={mnt}",
                     f"--machine={self.n.machine(short)}", f"--hostname={h.fqdn}", "--register=no",
                     "--keep-unit", f"--network-namespace-path=/run/netns/{hn}",
                     "--capability=CAP_NET_ADMIN", "--resolv-conf=off", "--timezone=off",
                     "--link-journal=no", "--console=read-only"],
                    console, preexec_fn=enter_cgroups,
                    # /proc/sys/net writable: the host's own network namespace, so the deploy's sysctls apply.
                    env={"PATH": PATH, "LANG": "C.UTF-8", "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"})
        return pid

    def host_mac(self, short: str) -> str:
        """The host's eth0 MAC: locally administered unicast, derived from the lab id and the host."""
        digest = hashlib.sha256(f"mailstead-lab/{self.n.lab_id}/{short}".encode()).digest()
        return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))

    def exec_argv(self, short: str, cmd, env: dict | None = None) -> list[str]:
        init = self.init_pid(short)
        if init is None:
            raise LabError(f"host {short} of lab {self.n.lab_id} is not running")
        envs = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}
        if os.environ.get("TERM"):
            envs["TERM"] = os.environ["TERM"]
        envs.update(env or {})
        return ["nsenter", "-t", str(init), "-a", "-r", "-w", "env", "-i",
                *[f"{k}={v}" for k, v in envs.items()], *cmd]
