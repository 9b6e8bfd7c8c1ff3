# Settings for spamtrap MX hosts. Each trap's `spamtrap_position` ("first" or "last") is host data in
# inventory.py: the "first" trap gets the lowest MX preference number (10) and refuses connections at once,
# the real mail host is in the middle (20), the "last" trap (30) answers 421 to everyone.
