"""pyinfra's configuration of mailstead's deploy. pyinfra reads config.py from the directory it runs in: run
pyinfra from the project directory, as README.md does.

Only requirements live here. Nothing that changes what a deploy does (sudo, parallelism, timeouts, fail
percentage, ...) is set: those stay pyinfra's defaults or the command line's.

- REQUIRE_PYINFRA_VERSION: the pyinfra versions this code was written for (the range of pyproject.toml; a unit
  test keeps the two equal). Another pyinfra stops the run before the inventory is loaded.
- REQUIRE_PACKAGES: the dependencies pyproject.toml declares, with their ranges, so a .venv that lacks one or
  holds a version outside its range stops the run with "Deploy requirements ... not met" instead of failing
  half-way. `make venv` installs exactly requirements.lock, which meets both.
"""

import tomllib
from pathlib import Path

from pyinfra import config

config.REQUIRE_PYINFRA_VERSION = ">=3.10,<4"

with open(Path(__file__).resolve().parent / "pyproject.toml", "rb") as _pyproject:
    config.REQUIRE_PACKAGES = list(tomllib.load(_pyproject)["project"]["dependencies"])
