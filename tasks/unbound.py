"""Unbound (mail hosts): a local, DNSSEC-validating resolver on 127.0.0.1/::1 for the host and for rspamd.

Full recursion from the root by default (DNS blocklists answer only direct queries, never ones that come
through big public resolvers); ``resolver_forwarders`` sends every query to those resolvers instead (the lab:
its own DNS), ``resolver_insecure_domains`` turns validation off below those names (the lab's ``test``).

Files on the host:
  /etc/unbound/unbound.conf.d/mailstead.conf   checked with ``unbound-checkconf`` before it goes live
  /etc/resolv.conf                             nameserver 127.0.0.1 and ::1 (once Unbound answers)
"""

from __future__ import annotations

from pyinfra.operations import apt

from tasks.common import checked_file, enable_and_start, mark_pending, render, restart_if

PACKAGES = ["unbound", "dns-root-data"]  # the root trust anchor and hints are only a Recommends of unbound
CONFIG = "/etc/unbound/unbound.conf.d/mailstead.conf"
WAIT_FOR_UNBOUND = ("for i in $(seq 1 50); do unbound-control status >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
                    "unbound-control status")


def unbound_conf(settings) -> str:
    return render("unbound/mailstead.conf.j2", insecure=settings.resolver_insecure_domains,
                  forwarders=settings.resolver_forwarders)


def deploy(settings, env, results) -> None:
    packages = apt.packages(name="Unbound", packages=PACKAGES, no_recommends=True)
    mark_pending("unbound", ops=[packages], name="Unbound must restart after its install changed")
    conf = checked_file(name="Unbound configuration (checked with unbound-checkconf)", dest=CONFIG,
                        content=unbound_conf(settings), check="unbound-checkconf {staged} >/dev/null",
                        mode="644", restarts="unbound", secret=False)
    enable_and_start("unbound")
    restart_if("unbound", conf, packages, name="Restart Unbound after a change")
    # the check: Unbound is up and resolves before the host is pointed at it
    checked_file(name="resolv.conf: the local Unbound", dest="/etc/resolv.conf", content=render("unbound/resolv.conf.j2"),
                 check=WAIT_FOR_UNBOUND, mode="644", secret=False)
