"""The deploy machine's Python dependencies: every third-party import declared in pyproject.toml, every
declaration locked with hashes in requirements.lock, .venv holding exactly the lock, and config.py asking
pyinfra for the same versions."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
SOURCES = [ROOT / "mailstead", ROOT / "tasks", ROOT / "deploy.py", ROOT / "inventory.py", ROOT / "config.py",
           ROOT / "tests", ROOT / "bench"]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared() -> dict[str, Requirement]:
    project = pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return {canonicalize_name(r.name): r for r in reqs}


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, its hashes), read from requirements.lock."""
    out: dict[str, tuple[Version, list[str]]] = {}
    name = None
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if m:
            name = canonicalize_name(m.group(1))
            out[name] = (Version(m.group(2)), [])
        elif name and (h := re.match(r"^\s+--hash=(sha256:[0-9a-f]{64})", line)):
            out[name][1].append(h.group(1))
        elif not line.startswith(" "):
            name = None
    return out


def local_modules() -> set[str]:
    """Top-level names that are this project's own files (the packages, tests' and bench's helper modules)."""
    names = set()
    for d in (ROOT, ROOT / "tests" / "lab", ROOT / "tests" / "unit", ROOT / "bench"):
        names |= {p.stem for p in d.glob("*.py")} | {p.name for p in d.iterdir() if (p / "__init__.py").exists()}
    return names | {"lablib"}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files importing it, for every import that is neither stdlib nor the project's own."""
    own = local_modules()
    files = [p for s in SOURCES for p in ([s] if s.is_file() else s.rglob("*.py"))]
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_third_party_package_is_declared():
    dists = importlib.metadata.packages_distributions()
    names = declared()
    missing = {}
    for module, files in sorted(third_party_imports().items()):
        owners = {canonicalize_name(d) for d in dists.get(module, [module])}
        if not owners & set(names):
            missing[module] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_declared_dependency_is_locked_with_hashes_within_its_range():
    lock = locked()
    for name, req in declared().items():
        assert name in lock, f"{name} is declared in pyproject.toml but not in requirements.lock: run `make lock`"
        version, hashes = lock[name]
        assert req.specifier.contains(version, prereleases=True), \
            f"requirements.lock pins {name}=={version}, outside pyproject.toml's {req}: run `make lock`"
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no hash in requirements.lock"


def test_the_lock_names_no_package_source():
    """Index, find-links and trusted-host lines would name this machine's package sources."""
    text = LOCK.read_text()
    assert not re.search(r"^\s*--(index-url|extra-index-url|find-links|trusted-host|no-index)\b", text, re.M)
    assert "://" not in text


def test_the_venv_holds_exactly_the_locked_versions():
    wrong = {}
    for name, (version, _) in locked().items():
        try:
            have = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = f"locked {version}, installed {have}"
    assert not wrong, f".venv differs from requirements.lock (run `make venv`): {wrong}"


def test_config_py_requires_the_pyinfra_range_of_pyproject():
    from pyinfra.api.config import Config
    from pyinfra.context import ctx_config

    pyinfra_req = declared()["pyinfra"]
    config = Config()
    with ctx_config.use(config):
        code = compile((ROOT / "config.py").read_text(), str(ROOT / "config.py"), "exec")
        exec(code, {"__file__": str(ROOT / "config.py")})  # the checks run here: they pass in this venv
    assert SpecifierSet(config.REQUIRE_PYINFRA_VERSION) == pyinfra_req.specifier, \
        "config.py's REQUIRE_PYINFRA_VERSION and pyproject.toml's pyinfra range differ"
    assert [Requirement(r).name for r in config.REQUIRE_PACKAGES] == \
        [Requirement(r).name for r in pyproject()["project"]["dependencies"]]
    assert locked()["pyinfra"][0] in pyinfra_req.specifier
