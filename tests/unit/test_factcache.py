"""tasks/factcache.py without a host: a batch command's output becomes the same facts pyinfra's own reads give,
failed or missing commands are left to pyinfra, and running anything on a host empties its memo. On booted
hosts (drift repaired, a second deploy changes nothing): tests/lab/test_deploy_safety.py."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from pyinfra.facts.files import File, Sha1File
from pyinfra.facts.systemd import SystemdStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks import factcache  # noqa: E402

SHA = "a" * 40
MARK = "@@mailstead-fact"


class FakeHost:
    def __init__(self, stdout: list[str], status: bool = True):
        self.stdout, self.status, self.commands = stdout, status, []
        self.print_prefix = "[fake] "

    def run_shell_command(self, command, **kwargs):
        self.commands.append(command)
        return self.status, SimpleNamespace(stdout_lines=self.stdout)


def entries(*facts):
    out = []
    for cls, kwargs in facts:
        fact = cls()
        fact.command(**kwargs)  # Sha1File remembers its path here, as in pyinfra's own read
        out.append(((cls, repr(sorted(kwargs.items())), "[]"), fact))
    return out


def test_a_batch_gives_each_fact_its_own_processed_value_and_skips_failed_ones():
    facts = entries((File, {"path": "/etc/a"}), (Sha1File, {"path": "/etc/a"}), (File, {"path": "/etc/gone"}),
                    (Sha1File, {"path": "/etc/broken"}), (SystemdStatus, {"services": ["x.service"]}))
    host = FakeHost([
        MARK, "user=root group=root mode=-rw-r--r-- atime=1 mtime=1 ctime=1 size=3 '/etc/a'", f"{MARK} 0",
        MARK, f"{SHA}  /etc/a", f"{MARK} 0",
        MARK, f"{MARK} 0",  # no output: the fact's default (the file does not exist)
        MARK, "garbage", f"{MARK} 1",  # failed: not kept, the operation reads it itself
        MARK, "@@mailstead-missing-command", f"{MARK} 0",  # systemctl missing: not kept either
    ])
    memo: dict = {}
    assert factcache._run_batch(host, {}, facts, "cmd", memo) == 3
    values = {key[0].__name__ + key[1]: value for key, value in memo.items()}
    assert values["File[('path', '/etc/a')]"]["user"] == "root"
    assert values["Sha1File[('path', '/etc/a')]"] == SHA
    assert values["File[('path', '/etc/gone')]"] is None
    assert len(memo) == 3


def test_a_failed_batch_command_keeps_nothing():
    memo: dict = {}
    host = FakeHost([MARK, f"{SHA}  /etc/a", f"{MARK} 0"], status=False)
    assert factcache._run_batch(host, {}, entries((Sha1File, {"path": "/etc/a"})), "cmd", memo) == 0
    assert memo == {}


def test_running_anything_on_the_host_empties_its_memo_but_a_fact_read_does_not():
    calls = []

    class Host:
        state = object()

        def run_shell_command(self, *args, **kwargs):
            calls.append(args)
            return True, None

    Host.run_shell_command = factcache._changing(Host.run_shell_command)
    host = Host()
    setattr(host, factcache._MEMO, {"stage": 1, "k": "v"})
    setattr(host, factcache._READING, True)
    host.run_shell_command("fact command")
    assert getattr(host, factcache._MEMO) == {"stage": 1, "k": "v"}
    setattr(host, factcache._READING, False)
    host.run_shell_command("an operation's command")
    assert getattr(host, factcache._MEMO) is None
    assert len(calls) == 2


def test_the_locked_pyinfra_is_one_factcache_was_tested_with():
    """factcache patches pyinfra's Host: bumping pyinfra in requirements.lock must come with a re-check (the
    lab's drift and idempotency tests) and a new TESTED_PYINFRA entry, not slip in silently."""
    lock = (Path(__file__).resolve().parents[2] / "requirements.lock").read_text()
    locked = next(line.split("==")[1].split()[0] for line in lock.splitlines() if line.startswith("pyinfra=="))
    assert locked in factcache.TESTED_PYINFRA


def test_an_untested_pyinfra_is_left_alone(monkeypatch):
    from pyinfra.api.host import Host

    monkeypatch.setattr(factcache, "_original", {})
    monkeypatch.setattr(factcache, "version", lambda name: "3.99.0")
    before = Host.get_fact
    assert factcache.install() is False
    assert Host.get_fact is before
