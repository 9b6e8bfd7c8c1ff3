"""Small helpers shared by the lab modules (stdlib only)."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("MAILSTEAD_LAB_CACHE", "/var/cache/mailstead-lab"))
VAR_DIR = Path("/var/lib/mailstead-lab")


class LabError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, capture=True, input=None, env=None, timeout=None, quiet=False):
    """Run a command; on failure raise LabError with its output."""
    cmd = [str(c) for c in cmd]
    p = subprocess.run(cmd, input=input, text=True, env=env, timeout=timeout,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if check and p.returncode != 0:
        raise LabError(f"command failed ({p.returncode}): {' '.join(cmd)}\n"
                       f"{(p.stdout or '')[-2000:]}{(p.stderr or '')[-2000:]}")
    return p


def write_file(path, content: str | bytes, mode: int = 0o644) -> bool:
    """Write atomically; return True when the content changed."""
    path = Path(path)
    data = content.encode() if isinstance(content, str) else content
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o7777) == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def read_json(path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def write_json(path, data, mode=0o644) -> bool:
    return write_file(path, json.dumps(data, indent=2, sort_keys=False) + "\n", mode)


@contextlib.contextmanager
def flock(path):
    """An exclusive advisory lock held for the duration of the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ---- processes: found by their exact, lab-specific arguments, ended by PID ----

def proc_argv(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.decode(errors="replace").split("\0")[:-1] if raw else None


_snapshot: dict[int, list[str]] | None = None


@contextlib.contextmanager
def proc_snapshot():
    """Within the block, find_procs reads one snapshot of the process table (for read-only queries)."""
    global _snapshot
    if _snapshot is not None:
        yield
        return
    _snapshot = {pid: argv for pid in _pids() if (argv := proc_argv(pid))}
    try:
        yield
    finally:
        _snapshot = None


def _pids():
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def find_procs(match) -> list[int]:
    """PIDs whose argv satisfies match(argv) (zombies and kernel threads skipped)."""
    if _snapshot is not None:
        return sorted(pid for pid, argv in _snapshot.items() if match(argv))
    pids = []
    for pid in _pids():
        argv = proc_argv(pid)
        if argv and match(argv):
            pids.append(pid)
    return sorted(pids)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return out


def stop_pids(pids, timeout=10.0, sig=signal.SIGTERM) -> None:
    """Send sig to each PID, wait for them to go, SIGKILL what remains."""
    pids = [p for p in pids if alive(p)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pids)
        pids = [p for p in pids if alive(p)]
        if not pids:
            return
        time.sleep(0.05)
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        _reap(pids)
        pids = [p for p in pids if alive(p)]
        time.sleep(0.05)


def _reap(pids):
    for p in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(p, os.WNOHANG)


def spawn(cmd, logfile, preexec_fn=None, env=None) -> int:
    """Start a long-running daemon detached from us (own session), output to logfile."""
    Path(logfile).parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=preexec_fn, env=env, close_fds=True)
    return p.pid


# ---- timings ----

class Timer:
    def __init__(self, label: str):
        self.label = label
        self.t0 = time.monotonic()
        self.last = self.t0
        self.steps: list[tuple[str, float]] = []

    def step(self, name: str) -> None:
        now = time.monotonic()
        self.steps.append((name, now - self.last))
        log(f"{self.label}: {name} {now - self.last:.2f}s")
        self.last = now

    def total(self) -> float:
        return time.monotonic() - self.t0

    def as_dict(self):
        return {"total": round(self.total(), 2), **{n: round(s, 2) for n, s in self.steps}}
