# Settings for spamtrap MX hosts. Each trap's `spamtrap_position` ("first" or "last") is host data in
# inventory.py: the "first" trap gets the lowest MX preference number (10), the real mail host is in the
# middle (20), the "last" trap the highest (30). Spammers that try the lowest or the highest MX only never
# reach the real one; real senders go on to the next MX at once.
# In this version the traps get the base stage and nothing listens on port 25, so both refuse connections
# (a TCP reset, which senders treat as "try the next MX" without delay). The "last" trap's 421 answer and
# its logging come with the spamtrap stage, which is not built yet.
