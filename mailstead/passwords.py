"""Password hashes for group_data: ``python -m mailstead hash-password``.

Makes Dovecot ``{BLF-CRYPT}`` hashes (bcrypt, cost 12). The password is read from a tty prompt
(asked twice) or as one line from stdin; only the hash is printed, never the password.
The settings refuse bcrypt hashes of a cost below ``MIN_COST``.
"""

from __future__ import annotations

import getpass
import sys

import bcrypt

SCHEME = "{BLF-CRYPT}"
COST = 12
MIN_COST = 10  # the lowest bcrypt cost the settings accept (mailstead.settings)


def hash_password(password: str, rounds: int = COST) -> str:
    """'{BLF-CRYPT}$2b$12$...' for a password (bcrypt uses at most the first 72 bytes)."""
    if rounds < MIN_COST:
        raise ValueError(f"bcrypt cost {rounds} is below {MIN_COST}; the settings would refuse the hash")
    raw = password.encode("utf-8")
    if not raw:
        raise ValueError("empty password")
    if len(raw) > 72:
        raise ValueError("password longer than 72 bytes (bcrypt ignores the rest)")
    return SCHEME + bcrypt.hashpw(raw, bcrypt.gensalt(rounds=rounds, prefix=b"2b")).decode("ascii")


def verify_password(password: str, hashed: str) -> bool:
    """True if password matches a '{BLF-CRYPT}' hash made by hash_password (or any $2a/$2b/$2y hash)."""
    if hashed.startswith(SCHEME):
        hashed = hashed[len(SCHEME):]
    elif hashed.startswith("{"):
        raise ValueError(f"verify_password only knows {SCHEME} hashes")
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except ValueError:
        return False


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Again: ")
        if first != second:
            raise SystemExit("mailstead hash-password: the passwords differ; nothing printed")
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def main(argv: list[str] | None = None) -> int:
    """Entry of `python -m mailstead hash-password`: prints only the hash."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "hash-password":
        args = args[1:]
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m mailstead hash-password < password-file  (or type it twice at the prompt)\n"
              "Prints a {BLF-CRYPT} hash for group_data: password_hash = \"<hash>\"")
        return 0
    password = _read_password()
    try:
        print(hash_password(password))
    except ValueError as e:
        print(f"mailstead hash-password: {e}; nothing printed", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
