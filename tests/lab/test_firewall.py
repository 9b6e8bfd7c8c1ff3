"""The firewall as the outside world meets it: a port scan of every host, a connection flood on port 25 next
to a real delivery, a broken rule that never reaches the running ruleset, and deploys that still connect.

Every client runs in the lab's outside world. The scan and the flood come from outside pool addresses
(topology.OUTSIDE_POOL_V4): the gateway address, where the rest of the suite's clients connect from, is in
the lab's ``firewall.unmetered_sources``.
"""

from __future__ import annotations

import time

from lablib import topology

from helpers import env_host, net_python, run_tasks, swaks, token

SCAN = r"""
import asyncio, resource, socket, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
async def probe(sem, host, port, open_ports):
    async with sem:
        try:
            fut = asyncio.open_connection(host, port, local_addr=(ARGS["source"], 0))
            _, w = await asyncio.wait_for(fut, ARGS["timeout"])
            open_ports.append(port)
            w.close()
        except (OSError, asyncio.TimeoutError):
            pass
async def main():
    sem = asyncio.Semaphore(ARGS["concurrency"])
    out = {}
    for host in ARGS["hosts"]:
        found = []
        await asyncio.gather(*(probe(sem, host, p, found) for p in ARGS["ports"]))
        out[host] = sorted(found)
    return out
t0 = time.monotonic()
res = asyncio.run(main())
print(json.dumps({"open": res, "seconds": time.monotonic() - t0}))
"""

FLOOD = r"""
import socket, threading, time
held, refused, accepted = [], 0, 0
t0 = time.monotonic()
for i in range(ARGS["attempts"]):
    s = socket.socket(); s.settimeout(3); s.bind((ARGS["source"], 0))
    try:
        s.connect((ARGS["host"], 25)); accepted += 1; held.append(s)
    except ConnectionRefusedError:
        refused += 1; s.close()
    except OSError:
        s.close()
flood_seconds = time.monotonic() - t0
for s in held:
    s.close()
print(json.dumps({"accepted": accepted, "refused": refused, "seconds": flood_seconds}))
"""

LISTEN_AND_PROBE = r"""
import socket
s = socket.socket(); s.settimeout(3)
try:
    s.connect((ARGS["host"], ARGS["port"])); print(json.dumps({"reached": True}))
except OSError as e:
    print(json.dumps({"reached": False, "error": type(e).__name__}))
"""


# every port below 1025, and the ports of the daemons a mailstead host runs or may run that must stay inside
# (rspamd, redis/valkey, unbound-control, chrony NTS-KE, doveadm, LMTP/submission helpers, proxies)
SCAN_PORTS = sorted(set(range(1, 1025)) | {1344, 2525, 3306, 4190, 4460, 5432, 6379, 8025, 8080, 8081, 8443, 8953,
                                           10024, 10025, 11332, 11333, 11334, 11335, 12345, 24242, 26379})


def expected_ports(host: dict) -> tuple[set[int], set[int]]:
    """(ports that must answer, ports that may answer) for a host's roles."""
    roles = set(host["roles"])
    if "mailservers" in roles:
        return {22, 25, 465, 587, 993, 4190, 443}, {80, 143}
    if host.get("spamtrap_position") == "last":
        return {22, 25}, set()
    return {22}, set()  # trap-first refuses 25 (reset): not open


def test_a_port_scan_finds_only_the_roles_ports_open(lab, deployed, mailstead_hosts):
    hosts = {h["ipv4"]: h for h in mailstead_hosts}
    out = net_python(lab, SCAN, {"hosts": list(hosts), "source": topology.OUTSIDE_POOL_V4[5], "timeout": 1.0,
                                 "concurrency": 300, "ports": SCAN_PORTS}, timeout=900)
    print(f"full TCP scan of {len(hosts)} hosts: {out['seconds']:.1f} s")
    for addr, found in out["open"].items():
        must, may = expected_ports(hosts[addr])
        assert must <= set(found) <= must | may, f"{hosts[addr]['name']}: open {found}, expected {sorted(must)}"


def test_a_service_listening_on_another_port_is_not_reachable_from_outside(lab, deployed, mail_hosts):
    prod = env_host(mail_hosts, "production")
    # a stray daemon on all addresses (as rspamd's, redis' or a debug listener would be without the firewall)
    lab.exec(prod["name"], "systemd-run", "--unit=h11-stray", "--collect", "python3", "-m", "http.server",
             "--bind", "0.0.0.0", "8765")
    try:
        time.sleep(1)
        inside = lab.exec(prod["name"], "python3", "-c", "import socket; socket.create_connection(('127.0.0.1', "
                          "8765), 3); print('ok')", check=False)
        assert inside.stdout.strip() == "ok", inside.stderr
        outside = net_python(lab, LISTEN_AND_PROBE, {"host": prod["ipv4"], "port": 8765})
        assert outside == {"reached": False, "error": "TimeoutError"}, outside  # dropped, not even refused
    finally:
        lab.exec(prod["name"], "systemctl", "stop", "h11-stray", check=False)


def test_a_connection_flood_on_25_hits_the_limits_while_another_address_delivers(lab, deployed, mail_hosts):
    prod = env_host(mail_hosts, "production")
    before = lab.exec(prod["name"], "nft", "list", "counters", "table", "inet", "mailstead").stdout
    flood = net_python(lab, FLOOD, {"host": prod["ipv4"], "source": topology.OUTSIDE_POOL_V4[6], "attempts": 150},
                       timeout=300)
    # while the flooding address still holds its connections (they close at the end of its script) another
    # outside address delivers at once
    tok = token()
    t0 = time.monotonic()
    sent = swaks(lab, "--server", prod["ipv4"], "--local-interface", topology.OUTSIDE_POOL_V4[7],
                 "--from", "friend@outside.example", "--to", "bob@production.test", "--header", f"Subject: {tok}")
    seconds = time.monotonic() - t0
    after = lab.exec(prod["name"], "nft", "list", "counters", "table", "inet", "mailstead").stdout
    print(f"flood: {flood}; delivery from another address: {seconds:.2f} s")
    assert flood["refused"] >= 100 and flood["accepted"] <= 41, flood  # burst 40 / 40 held per source
    assert "250 " in sent.stdout and seconds < 5, sent.stdout[-1500:]
    assert before != after  # the refusals were the firewall's meters (its named counters moved)


BROKEN_RULE = """
from tasks import firewall
results.open_ports += [25, 465, 587, 993, 4190, 80, 443]
broken = settings.firewall.model_copy(update={"extra_input_rules": ["tcp dport 9999 acept"]})
firewall.deploy(settings.model_copy(update={"firewall": broken}), env, results)
"""


def test_a_broken_rule_fails_at_nft_check_and_the_old_ruleset_stays(lab, deployed, mail_hosts, tmp_path):
    prod = env_host(mail_hosts, "production")
    name = prod["name"]
    before_file = lab.exec(name, "sha256sum", "/etc/mailstead/firewall.nft").stdout
    before_rules = lab.exec(name, "nft", "list", "chain", "inet", "mailstead", "input").stdout
    run = run_tasks(tmp_path, name, BROKEN_RULE)
    assert run.returncode != 0
    assert "failed its check" in run.stderr + run.stdout
    assert lab.exec(name, "sha256sum", "/etc/mailstead/firewall.nft").stdout == before_file
    assert lab.exec(name, "nft", "list", "chain", "inet", "mailstead", "input").stdout == before_rules
    assert lab.exec(name, "systemctl", "is-active", "mailstead-firewall").stdout.strip() == "active"


def test_a_second_deploy_connects_through_the_firewall_and_changes_nothing(redeployed):
    assert redeployed.returncode == 0, redeployed.stderr[-3000:]
    changed = redeployed.changed()
    assert not changed, changed
