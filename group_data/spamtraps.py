# Settings for spamtrap MX hosts. Each trap's `spamtrap_position` ("first" or "last") is host data in
# inventory.py: the "first" trap gets the lowest MX preference number (10), the real mail host is in the
# middle (20), the "last" trap the highest (30). Spammers that try the lowest or the highest MX only never
# reach the real one; real senders go on to the next MX at once.
# trap-first resets every connection to port 25 (never a drop: a real sender moves on at once) and counts the
# sources; trap-last answers 451 and stores nothing. The mail hosts of the environment fetch trap-last's
# sources and score mail from them in rspamd (README "Spamtraps"; settings: spamtrap = {...}).
