"""How mailstead's modules import each other: one direction only (no cycle at module level), and the DNS
package's import order that keeps HTTPS working in `python -m mailstead dns`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mailstead"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """mailstead module -> the mailstead modules its module-level code imports (importing a submodule also
    runs its packages' __init__)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("mailstead"):
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                deps.add(f"{base}.{node.module}" if node.module else base)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("mailstead")}
        parents = {".".join(d.split(".")[:i]) for d in deps for i in range(1, d.count(".") + 1)}
        graph[name] = {d for d in deps | parents if d in modules and d != name and not name.startswith(d + ".")}
    return graph


def test_no_import_cycle_between_mailstead_modules():
    graph = _graph()
    assert "mailstead.dkim" in graph["mailstead.dns.records"]  # DkimPublic: records depend on dkim ...
    assert not any(d.startswith("mailstead.dns") for d in graph["mailstead.dkim"])  # ... and not back
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        if state.get(m) == 1:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(graph[m]):
            visit(d, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])
    assert cycles == []


def test_dns_cli_import_order_keeps_https_working():
    """`python -m mailstead dns` imports mailstead.dns before the settings, whose pyinfra_cli import
    monkey-patches ssl; had mailstead.dns imported requests (ssl) first, every HTTPS call would raise
    RecursionError."""
    code = ("import mailstead.dns.cli, mailstead.dkim, mailstead.pki, mailstead.secrets\n"
            "import mailstead.settings, mailstead.inventory\n"
            "from mailstead.dns.providers import from_settings\n"
            "import urllib3.util.ssl_\n"
            "urllib3.util.ssl_.create_urllib3_context()\n")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_unit_and_lab_test_modules_have_different_names():
    """pytest imports test modules by basename (rootdir-relative, no packages): a unit and a lab module of the
    same name stop `make test` at collection, although each suite alone runs fine."""
    unit = {p.name for p in (ROOT / "tests" / "unit").glob("test_*.py")}
    lab = {p.name for p in (ROOT / "tests" / "lab").glob("test_*.py")}
    assert not unit & lab, f"rename one of each pair: {sorted(unit & lab)}"
