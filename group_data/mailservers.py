# Settings for the real mail hosts (MX + IMAP + submission).
