"""The package's shape, as docs/development.md draws it: no two modules share a file name, imports run
down the floors (none back up, no cycles, counting imports inside functions), the evaluation core never
imports the research code, imports are at the top of a module except the command line's lazy commands
and the heavy packages the map names, and the map names every module."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lipsync_bench"
MAP = ROOT / "docs" / "development.md"

#: The floors, lowest first: a module imports from its own floor or from those below it.
FLOORS = [
    # ground: no decoding, no models; what every floor may read
    ["lipsync_bench", "errors", "lazy", "jsontext", "rendering", "environment", "stats", "files", "checkpoints",
     "weights", "baselines", "faces.settings", "syncnets", "syncnets.inputs", "syncnets.expert_names"],
    ["media", "decode_worker", "reencode", "metrics.streaming"],
    ["faces", "faces.*", "syncnets.*", "metrics", "metrics.registry", "metrics.declarations", "speech_segments"],
    ["protocol"],
    ["store", "metrics.*"],
    ["pipeline", "dataset_metrics", "report"],
    ["shards", "verify", "report_html", "calibration", "leaderboard"],
    ["evaluation"],
    ["demo"],
    ["research", "research.*"],
    ["commands", "commands.*", "cli", "__main__"],
]
#: Modules whose lazy imports of the library are their design (the command line's commands).
LAZY_COMMANDS = "lipsync_bench.commands."


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_nodes(path: Path):
    """(node, at the top) for every import statement of a module, inside functions too."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, id(node) in top or _module_level(tree, node)


def _module_level(tree: ast.Module, node) -> bool:
    """An import in a module-level ``if``/``try`` block (a version switch, TYPE_CHECKING) is at the top."""
    for stmt in tree.body:
        if isinstance(stmt, (ast.If, ast.Try)) and any(n is node for n in ast.walk(stmt)):
            return not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.walk(stmt))
    return False


def targets(path: Path, node) -> tuple[set[str], str]:
    """The lipsync_bench modules an import statement reaches, and the top-level package it names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        found = {t for t in [target, *(f"{target}.{a.name}" for a in node.names)] if t in MODULES}
        return found - {name}, target.split(".")[0]
    names = [a.name for a in node.names]
    return {n for n in names if n in MODULES} - {name}, names[0].split(".")[0]


def graph() -> dict[str, set[str]]:
    return {name: set().union(*[targets(path, node)[0] for node, _ in import_nodes(path)])
            for name, path in MODULES.items()}


def floor(module: str) -> int:
    short = module.removeprefix("lipsync_bench.") if module != "lipsync_bench" else module
    best = None
    for i, members in enumerate(FLOORS):
        for m in members:  # an exact name wins over a pattern
            if m == short:
                return i
            if m.endswith(".*") and short.startswith(m[:-1]) and best is None:
                best = i
    assert best is not None, f"{module} is on no floor: add it to FLOORS and to the map in docs/development.md"
    return best


def test_no_two_modules_share_a_file_name():
    names = [p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_imports_run_down_the_floors():
    upward = [f"{a} (floor {floor(a)}) imports {b} (floor {floor(b)})" for a, edges in graph().items()
              for b in edges if floor(b) > floor(a)]
    assert upward == []


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if nxt.startswith(node + "."):  # a package's __init__ importing its own submodules
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
    research = {m for m in MODULES if m.startswith("lipsync_bench.research")}
    front = {"lipsync_bench.cli", "lipsync_bench.commands.research_commands",
             "lipsync_bench.commands.training_commands"}
    found = [f"{a} imports {b}" for a, edges in graph().items() if a not in research | front
             for b in edges & research]
    assert found == []


def deferred_imports() -> set[tuple[str, str]]:
    """(module, package) of every import inside a function, but the command line's lazy commands."""
    out = set()
    for name, path in MODULES.items():
        if name.startswith(LAZY_COMMANDS):
            continue
        for node, at_top in import_nodes(path):
            if not at_top:
                out.add((name.removeprefix("lipsync_bench."), targets(path, node)[1]))
    return out


def test_imports_are_at_the_top_but_the_heavy_packages_the_map_names():
    """docs/development.md lists each deferred import with its reason, one line each; the code defers
    exactly those."""
    text = MAP.read_text()
    section = text[text.index("### Deferred imports"):]
    listed = set(re.findall(r"^- `([a-z_.]+)`: `([a-z_.]+)`", section, flags=re.M))
    listed = {(module, package.split(".")[0]) for module, package in listed}
    assert deferred_imports() == listed


def test_the_map_names_every_module():
    text = MAP.read_text()
    missing = [m for m in MODULES if m != "lipsync_bench" and not m.endswith("__init__")
               and Path(*m.split(".")[1:]).with_suffix(".py").name not in text
               and Path(*m.split(".")[1:]).name + "/" not in text]
    assert missing == []
