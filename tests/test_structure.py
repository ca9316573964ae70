"""The tree shows the data flow: packages import only downward in the order CONTRIBUTING.md states, no module imports
itself back through others (the lazy model registry, which imports its model families when first asked, is the one
exception), nothing is imported by a string or planted in sys.modules, and one module owns the clock."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "convbench"
ALLOWED_CYCLE = {"convbench.zoo.registry", "convbench.zoo.models"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every convbench module `path` imports, at any depth of its code, parents of a submodule included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    # A submodule's import runs its parent packages first; the root package's own imports are the public API, which
    # every module may rely on being underway, so only an explicit `import convbench` counts as importing it.
    found = {"convbench"} & targets - {name}
    for target in targets:
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            candidate = ".".join(parts[:i])
            if candidate in modules and candidate != name:
                found.add(candidate)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_but_the_lazy_registry():
    modules = _modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    cycles = _cycles(graph)
    allowed = [c for c in cycles if {m.rsplit(".", 1)[0] if m.startswith("convbench.zoo.models.") else m for m in c} <= ALLOWED_CYCLE]
    assert [sorted(c) for c in cycles if c not in allowed] == []
    assert len(allowed) == 1  # and the registry's is still the one it was


BASE = {"_version", "children", "errors", "files", "interrupts", "lists", "stats", "units"}
PUBLIC = {"__init__", "__main__", "bench", "entry", "pytest_plugin"}
# Lowest first: a module may import its own layer and those before it, never one after it.
LAYERS = ["base", "zoo", "measure", "results", "run", "analysis", "gate", "selfcheck", "cli", "public"]


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in PUBLIC:
        return "public"
    return "base" if parts[1] in BASE else parts[1]


def test_the_tree_has_one_folder_per_stage_of_the_flow():
    top = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert top == set(LAYERS) - {"base", "public"}
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    assert flat <= BASE | PUBLIC


def test_every_import_runs_down_the_layers():
    modules = _modules()
    upward = sorted(f"{name} imports {target}" for name, path in modules.items()
                    for target in _imports(path, name, modules)
                    if LAYERS.index(_layer(target)) > LAYERS.index(_layer(name)))
    assert upward == []


def test_the_base_modules_import_no_other_layer():
    modules = _modules()
    for name in (f"convbench.{b}" for b in BASE):
        assert {_layer(t) for t in _imports(modules[name], name, modules)} <= {"base"}, name


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            yield (f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""), node


def test_nothing_is_imported_by_a_string_or_planted_in_sys_modules():
    found = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        for called, node in _calls(tree):
            literal = node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
            if called in ("import_module", "__import__") and literal:
                found.append(f"{name}: {called}({node.args[0].value!r})")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Subscript) and ast.unparse(t.value) == "sys.modules":
                        found.append(f"{name}: assigns {ast.unparse(t)}")
    assert found == []


CLOCK = "convbench.measure.clock"
# Clocks read for deadlines and load windows, never for a figure of a call: a child's time-out (isolate), the
# window over which the host's busy share is read (host_load).
DEADLINES = {"convbench.run.isolate", "convbench.measure.host_load"}


def test_one_clock_times_everything_convbench_reports():
    """Only convbench.measure.clock creates a CUDA event or reads a high-resolution clock; every other module asks it
    (a second timer is how the gate and profile came to measure different things)."""
    found = []
    for name, path in _modules().items():
        if name == CLOCK:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            text = ast.unparse(node) if isinstance(node, (ast.Attribute, ast.Name, ast.alias)) else ""
            if isinstance(node, ast.alias):
                text = node.name
            leaf = text.rsplit(".", 1)[-1]
            if leaf in ("perf_counter", "perf_counter_ns", "process_time", "thread_time") or text.endswith("cuda.Event"):
                found.append(f"{name}: {text}")
            elif leaf in ("monotonic", "monotonic_ns", "time") and text.startswith("time.") and name not in DEADLINES:
                found.append(f"{name}: {text}")
    assert found == []
