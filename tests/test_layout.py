"""The package's shape: no two modules share a file name, no import cycles, the evaluation core never
imports the research code."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lipsync_bench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """The lipsync_bench modules a module imports at its top level (the imports that can form cycles)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("lipsync_bench"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)  # ``from . import media``
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("lipsync_bench"))
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in top_level_imports(path) if t in modules and t != name} for name, path in modules.items()}


def test_no_two_modules_share_a_file_name():
    names = [p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            # a package's __init__ importing its own submodules is not a cycle through the package
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    real = [c for c in cycles if not any(b.startswith(a + ".") for a, b in zip(c, c[1:], strict=False))]
    assert real == []


def test_the_core_never_imports_the_research_code():
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name.startswith("lipsync_bench.research") or name == "lipsync_bench.cli":
            continue
        text = path.read_text()
        assert "research" not in {part for line in text.splitlines() if "import" in line
                                  for part in line.replace(".", " ").split()}, name
