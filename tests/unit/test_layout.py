"""The package layout of docs/architecture.md holds: no import from a lower floor to a higher one, no circle.

Every import of every module counts, also one inside a function (a call back
up the layers is one, however lazily it is made). Modules of one package may
import each other; packages and the top-level modules sit on the floors below.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dvc_docker_exec"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def floors() -> Dict[str, int]:
    """The floors table of docs/architecture.md: unit (`commands`, `dvc_glue`, ...) -> floor number."""
    result: Dict[str, int] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|(.*?)\|", line)
        if match:
            for name in re.findall(r"`([\w.]+)/?`", match.group(2)):
                result[name.removeprefix("dvc_docker_exec.")] = int(match.group(1))
    return result


def unit_of(module: str) -> str:
    """dvc_docker_exec.backends.runner -> backends; dvc_docker_exec.dvc_glue -> dvc_glue."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def modules() -> Iterator[Tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(module: str, path: Path) -> Set[str]:
    """Every dvc_docker_exec module `module` imports, at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "dvc_docker_exec":  # from dvc_docker_exec import x: x is the module
                found.update(f"{target}.{a.name}" for a in node.names)
            elif target.startswith("dvc_docker_exec."):
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dvc_docker_exec."))
    return found


def package_edges() -> Dict[Tuple[str, str], Set[str]]:
    """(from unit, to unit) -> the module imports that make the edge, between different units."""
    edges: Dict[Tuple[str, str], Set[str]] = {}
    for module, path in modules():
        for target in imports(module, path):
            a, b = unit_of(module), unit_of(target)
            if a != b and not target.endswith(".__version__"):
                edges.setdefault((a, b), set()).add(f"{module} -> {target}")
    return edges


def test_every_unit_has_a_floor() -> None:
    known = floors()
    units = {unit_of(m) for m, _ in modules()} - {"dvc_docker_exec"}
    assert units - set(known) == set(), "add them to the floors table of docs/architecture.md"


def test_no_import_from_a_lower_floor_to_a_higher_one() -> None:
    known = floors()
    upward = sorted(
        how
        for (a, b), hows in package_edges().items()
        if a in known and b in known and known[b] > known[a]
        for how in hows
    )
    assert upward == []


def test_no_circle_between_packages() -> None:
    graph: Dict[str, Set[str]] = {}
    for a, b in package_edges():
        graph.setdefault(a, set()).add(b)
    state: Dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: Tuple[str, ...]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, (*trail, node))
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, ())


def test_the_floors_parse() -> None:
    known = floors()
    assert known["errors"] == known["config"] == 0
    assert known["api"] < known["boundary"] < known["types"] < known["backends"] < known["stage"]
    assert known["stage"] < known["dependency"] < known["commands"] < known["dvc_glue"]


def test_the_hook_module_is_stdlib_only() -> None:
    """The `.pth` runs it at every Python start: it imports nothing of ours at module level, not even the package."""
    for path in (ROOT / "dvc_docker_exec_hook.py",):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert all(
            (n.module if isinstance(n, ast.ImportFrom) else n.names[0].name) in {"sys", "__future__"}
            for n in top
        )


def test_no_backend_branch_outside_the_backends() -> None:
    """A difference between one engine and Swarm is a backend's method or attribute, not an `if backend ==`."""
    found = []
    for module, path in modules():
        if unit_of(module) == "backends":
            continue  # session builds the backend docker.backend names
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Attribute) and s.attr == "backend" for s in sides):
                    found.append(f"{module}:{node.lineno}")
    assert found == []
