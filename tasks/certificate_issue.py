"""The first ACME certificate (and any renewal that is due) during the deploy: the last stage, after the DNS
stage published the host's names (the client waits until they resolve), with nginx already answering the
HTTP-01 challenge on port 80. tls.mode 'acme' only; tasks.certificates installed the client before.

The ``AcmeDue`` fact asks the host's client whether its certificate is current (ARI included); when it is and
nothing the client reads changed, this stage adds no operation, so a second deploy changes nothing and asks
for no certificate. A failing issuance fails the deploy with the client's one-line reason; the daemons keep
the certificate they have (the placeholder on a fresh host).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import server

from mailstead.acme.renewal import cert_names
from tasks.certificates import CONFIG, SERVICE, AcmeDue
from tasks.common import dry_run


def deploy(settings, env, results) -> None:
    if settings.tls.mode != "acme":
        return
    if dry_run() and not host.get_fact(File, path=CONFIG):
        return  # nothing installed yet: the dry run of tasks.certificates already says what would come
    due = host.get_fact(AcmeDue)
    changed = [op for op in results.acme_changed if op is not None]
    if due == "ok" and not any(op.will_change for op in changed):
        host.noop("the ACME certificate is current")
        return
    # through the timer's own service: the run is in its journal like every renewal, and a failure shows
    # the client's reason in the deploy's output
    server.shell(name=f"ACME: certificate for {', '.join(cert_names(settings.fqdn, env.domains))} ({due})",
                 commands=[f"systemctl start {SERVICE}.service || {{ journalctl -u {SERVICE}.service -n 5 "
                           f"--no-pager -o cat >&2; exit 1; }}"])
