"""The DNS stage, last in the deploy: the environment's records, planned while pyinfra prepares the run
(so `--dry` prints the plan and changes nothing, not even the deploy machine's secrets directory), applied
when the run reaches the end.

It runs for one host per environment (its first mail host), from the deploy machine, which must reach the
provider's API (the lab runs pyinfra inside the lab's network for that). An up-to-date zone adds no
operation at all, so a second deploy reports no change and makes no write call.
"""

from __future__ import annotations

from pyinfra import logger
from pyinfra.operations import python

from mailstead import dns
from tasks.common import dry_run


def deploy(settings, env, results) -> None:
    """``env``: the EnvironmentSettings of the host's environment (deploy.py builds it from the inventory)."""
    if not dns.is_dns_host(settings, env):
        return
    plan, text = dns.prepare(env, dry=dry_run())
    logger.info(f"DNS for {env.environment}:\n{text}")
    if plan.empty:  # up to date, or provider 'none' (the text lists the records to publish)
        return
    python.call(
        name=f"DNS: apply {len(plan)} change(s) to {', '.join(z.zone for z in plan.zones if z.changes)}",
        function=plan.apply,
    )
