"""`python -m mailstead logs`: one message's journal lines found from its smtpd id or its Message-ID (the lines
are a real lab journal: an alias delivery of smtpd 7.9 and Dovecot 2.4, with another message around it)."""

from __future__ import annotations

from mailstead.mailops import trace

JOURNAL = """\
2026-11-29T05:03:59+00:00 mail.staging.test smtpd[12567]: ba02bd308fac8312 mda delivery evpid=2cb80c47eb5e375e from=<sender@outside.example> to=<carol@staging.test> rcpt=<carol@staging.test> user=vmail delay=0s result=Ok stat=Delivered
2026-11-29T05:04:00+00:00 mail.staging.test dovecot[15534]: imap-login: Logged in: user=<carol@staging.test>, method=PLAIN, rip=198.51.100.1, lip=198.51.100.11, mpid=28625, TLS, session=<yWWkOGNhhMbGM2QB>
2026-11-29T05:04:21+00:00 mail.staging.test smtpd[12567]: ba02bd32d4ac54dd smtp connected address=198.51.100.1 host=<unknown>
2026-11-29T05:04:21+00:00 mail.staging.test smtpd[12567]: ba02bd32d4ac54dd smtp message msgid=f79e820c size=620 nrcpt=1 proto=ESMTP
2026-11-29T05:04:21+00:00 mail.staging.test smtpd[12567]: ba02bd32d4ac54dd smtp envelope evpid=f79e820cc1a71d0d from=<sender@outside.example> to=<helpdesk@staging.test>
2026-11-29T05:04:21+00:00 mail.staging.test smtpd[12567]: ba02bd32d4ac54dd smtp disconnected reason=quit
2026-11-29T05:04:21+00:00 mail.staging.test dovecot[15534]: lmtp(carol@staging.test)<28617><GQHcMlWyC2vJbwAAISCFEQ>: msgid=<20261129050421.023341@vm>: saved mail to INBOX
2026-11-29T05:04:21+00:00 mail.staging.test smtpd[12567]: ba02bd332f593489 mda delivery evpid=f79e820cc1a71d0d from=<sender@outside.example> to=<carol@staging.test> rcpt=<helpdesk@staging.test> user=vmail delay=0s result=Ok stat=Delivered
2026-11-29T05:09:00+00:00 mail.staging.test smtpd[12567]: ba02bd40aaaaaaaa smtp connected address=198.51.100.9 host=<unknown>
""".splitlines()

PATH = JOURNAL[2:8]


def test_by_message_id_envelope_id_and_message_id_header():
    assert trace(JOURNAL, "f79e820c") == PATH
    assert trace(JOURNAL, "f79e820cc1a71d0d") == PATH
    assert trace(JOURNAL, "<20261129050421.023341@vm>") == PATH
    assert trace(JOURNAL, "20261129050421.023341@vm") == PATH


def test_a_sieve_delivery_line_is_found_too():
    journal = [line.replace(": msgid=<2026", ": sieve: msgid=<2026").replace("saved mail to INBOX",
               "stored mail into mailbox 'INBOX'") for line in JOURNAL]
    assert trace(journal, "<20261129050421.023341@vm>") == journal[2:8]


def test_unknown_ids_find_nothing():
    assert trace(JOURNAL, "deadbeef") == []
    assert trace(JOURNAL, "<nothing@here>") == []
