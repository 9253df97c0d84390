"""The package's shape, read from its source: imports point down the layers
of the architecture, no module imports itself back through a cycle, and no
module is over 400 lines."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_tfm"

# What each part may import from keras_tfm, bottom to top. The base modules
# import nothing of keras_tfm but each other; the package's own
# `__init__.py` (the public facade) and `cli.py` (the top) may import all.
BASE = {"constants", "errors", "files"}
ALLOWED = {
    "layers": BASE,
    "decoding": BASE | {"layers"},
    "models": BASE | {"layers", "decoding"},
    "text": BASE,
    "data": BASE | {"text"},
    "training": BASE | {"layers", "models", "text", "data"},
    "export": BASE | {"layers", "models", "decoding", "text"},
    "job": BASE
    | {"layers", "models", "decoding", "text", "data", "training", "export"},
}
MAX_LINES = 400


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield (
            path,
            ".".join(("keras_tfm",) + path.relative_to(PACKAGE).with_suffix("").parts),
        )


def imported(path, module_level_only=False):
    """The keras_tfm modules `path` imports (as dotted names)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "keras_tfm":
                names.update(f"keras_tfm.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return {name for name in names if name.split(".")[0] == "keras_tfm"}


def part_of(module):
    """`keras_tfm.decoding.beam_search` -> "decoding"; base modules by name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "keras_tfm"


def test_imports_point_down():
    wrong = []
    for path, module in modules():
        part = part_of(module)
        if part in ("keras_tfm", "cli", "__init__"):
            continue
        allowed = ALLOWED.get(part, BASE - {part} if part in BASE else None)
        assert allowed is not None, f"{module}: a part the rule does not name"
        if part in BASE:
            allowed = BASE - {part}
        for name in imported(path):
            target = part_of(name)
            if target != part and target not in allowed:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = {}
    for path, module in modules():
        name = module.removesuffix(".__init__")
        graph[name] = {
            target
            for target in imported(path, module_level_only=True)
            if target != name
        }
    # Depth-first search for a back edge, reporting the cycle it closes.
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_over_400_lines():
    long = {
        module: count
        for path, module in modules()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
