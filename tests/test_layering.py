"""The package layering of ``ifr``: parsed from the source with ``ast``, nothing imported.

Layers, lowest first; a module may import its own layer or lower ones only:

    0  ifr.utils, ifr.config        helpers and config keys
    1  ifr.layers                   pure tensor functions shared by model and inference
                                    (matching costs, point sampling, class probabilities)
    2  ifr.data, ifr.checkpoint,    datasets; checkpoint I/O; the model's components
       ifr.modeling                 (backbone, pixel decoder, transformer decoders,
                                    matcher, criteria, ...)
    3  ifr.inference                whole-video / per-clip inference, TTA, predictor
    4  ifr.modeling.meta_arch       the meta-architectures (they call ``ifr.inference``);
                                    ``ifr/modeling/__init__.py`` belongs here, as it
                                    imports them to register them
    5  ifr.evaluation
    6  ifr.engine
    7  ifr.experiments, ifr.benchmark
    8  ifr                          the package root, which imports data and modeling

Importing ``a.b.c`` runs the ``__init__`` of ``a.b`` first, so an import of a submodule
also counts as an import of every enclosing package the importer is not itself inside.
Function-level imports count the same as module-level ones.
"""

import ast
import os
from collections import defaultdict
from typing import Dict, Optional, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(ROOT, "ifr")

LAYERS = {
    "ifr.utils": 0,
    "ifr.config": 0,
    "ifr.layers": 1,
    "ifr.data": 2,
    "ifr.checkpoint": 2,
    "ifr.modeling": 2,
    "ifr.inference": 3,
    "ifr.modeling.meta_arch": 4,
    "ifr.evaluation": 5,
    "ifr.engine": 6,
    "ifr.experiments": 7,
    "ifr.benchmark": 7,
    "ifr": 8,
}


def _module_files() -> Dict[str, str]:
    """Dotted module name -> path, for every .py file under ifr/ (packages by __init__)."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            modules[".".join(rel)] = os.path.join(folder, name)
    return modules


MODULES = _module_files()


def _is_package(module: str) -> bool:
    return MODULES.get(module, "").endswith("__init__.py")


def node_of(module: str) -> str:
    """The layer node of a module (a key of LAYERS)."""
    parts = module.split(".")
    if module == "ifr.modeling" or module.startswith("ifr.modeling.meta_arch"):
        return "ifr.modeling.meta_arch"
    if len(parts) == 1:
        return "ifr"
    return ".".join(parts[:2])


def _resolve(importer: str, node: ast.AST) -> Set[str]:
    """ifr modules named by one import statement of ``importer``."""
    targets = set()
    if isinstance(node, ast.Import):
        targets.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = importer.split(".")
            if not _is_package(importer):
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            base_name = ".".join(base + ([node.module] if node.module else []))
        else:
            base_name = node.module or ""
        for alias in node.names:
            candidate = f"{base_name}.{alias.name}"
            targets.add(candidate if candidate in MODULES else base_name)
    return {t for t in targets if t == "ifr" or t.startswith("ifr.")}


def _with_enclosing_packages(importer: str, target: str) -> Set[str]:
    """``target`` and the packages whose __init__ runs to import it, except those that
    contain ``importer`` (already running) and the root."""
    parts = target.split(".")
    found = {target}
    for depth in range(2, len(parts)):
        package = ".".join(parts[:depth])
        if not (importer == package or importer.startswith(package + ".")):
            found.add(package)
    return found


def import_edges() -> Dict[str, Set[str]]:
    """importer module -> imported ifr modules (module- and function-level imports)."""
    edges = defaultdict(set)
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(module, node):
                    edges[module] |= _with_enclosing_packages(module, target)
    return edges


def node_graph() -> Dict[str, Dict[str, str]]:
    """node -> {imported node: an example 'importer -> imported' module pair}."""
    graph = defaultdict(dict)
    for importer, targets in import_edges().items():
        for target in targets:
            a, b = node_of(importer), node_of(target)
            if a != b:
                graph[a].setdefault(b, f"{importer} -> {target}")
    return graph


def _find_cycle(graph: Dict[str, Dict[str, str]]) -> Optional[list]:
    state: Dict[str, int] = {}
    stack: list = []

    def visit(node: str) -> Optional[list]:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in list(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_every_module_has_a_layer():
    unknown = sorted({node_of(m) for m in MODULES} - set(LAYERS))
    assert not unknown, f"add these to LAYERS (and to the docstring): {unknown}"


def test_no_import_cycle_between_layers():
    cycle = _find_cycle(node_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_layer_imports_a_higher_one():
    violations = [
        example
        for node, targets in node_graph().items()
        for target, example in targets.items()
        if LAYERS[target] > LAYERS[node]
    ]
    assert not violations, "lower layer imports a higher one:\n" + "\n".join(sorted(violations))


def test_inference_never_imports_modeling():
    offending = [
        f"{importer} -> {target}"
        for importer, targets in import_edges().items()
        if importer.startswith("ifr.inference")
        for target in targets
        if target.startswith("ifr.modeling")
    ]
    assert not offending, offending


def test_the_graph_sees_known_edges():
    """The parser itself: relative, absolute and enclosing-package edges are found."""
    edges = import_edges()
    assert "ifr.inference.run" in edges["ifr.inference"]  # from .run import ...
    point_set = "ifr.modeling.matcher.point_set"
    assert "ifr.layers.matching_cost" in edges[point_set]  # from ...layers...
    assert "ifr.layers" in edges[point_set]  # its __init__ runs first
    assert "ifr.inference" in edges["ifr.modeling.meta_arch.base"]
    assert "ifr.modeling" not in edges[point_set]  # its own package


def _module_cycles() -> list:
    """Every cycle of module-to-module imports (function-level ones included), each as
    its list of modules; a package's ``__init__`` importing its own submodules is not an
    edge back from them (Python runs it before, not because of, the submodule)."""
    graph = {m: {t: m for t in targets if t in MODULES} for m, targets in import_edges().items()}
    cycles, seen = [], set()
    while True:
        pruned = {m: {t: e for t, e in ts.items() if (m, t) not in seen} for m, ts in graph.items()}
        cycle = _find_cycle(pruned)
        if cycle is None:
            return cycles
        cycles.append(cycle)
        seen.add((cycle[-2], cycle[-1]))


def test_no_import_cycle_between_modules():
    cycles = _module_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
