"""mailstead: a pyinfra toolkit that turns Debian 13 hosts into mail servers and publishes their DNS."""

from pathlib import Path

# The project's top directory (deploy.py, files/, keys given relative to it).
PROJECT_DIR = Path(__file__).resolve().parent.parent
