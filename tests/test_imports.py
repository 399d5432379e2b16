"""The packages' layers, read from the import graph: every import statement of every module
(also those inside functions), so a new module or a new import is checked without a list of
modules to keep up to date. docs/architecture.md draws the same layers."""

import ast
import graphlib
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = "trainers"  # the training engine (torch): a top-level package of its own

# what each package may import of the others: its layer (lower layers only) -- the architecture
LAYERS = {
    "core": set(),
    "files": {"core"},
    "embedded": {"core", "files"},
    ENGINE: {"core", "files"},
    "measurement": {"core", "files", ENGINE},
    "loop": {"core", "files", ENGINE},
    "report": {"core", "files", "loop"},
    # the application layer: a search as an object (SearchSession), the CLI's and the API's
    "session": {"core", "files", "embedded", ENGINE, "measurement", "loop", "report"},
    "cli": {"core", "files", "embedded", ENGINE, "measurement", "loop", "report", "session"},
    "api": {"core", ENGINE, "session"},  # autoprumux/__init__.py: the public names
    # synthetic grids and the calibration of the search's constants, for tests and benchmarks
    # only: no row holds it, so nothing a search, a command or the engine runs may import it
    "testing": {"core", "loop"},
    "__main__": {"cli"},
}
# the engine's sub-packages in the same way: each imports only those of its row (trainers/*/)
ENGINE_LAYERS = {
    "runtime": set(),
    "data": set(),
    "model": set(),
    "pruning": {"model"},
    "training": {"runtime", "data", "model", "pruning"},
    "deploy": {"runtime", "data", "model"},
    "trial": {"runtime", "data", "model", "pruning", "training", "deploy"},
}
# the libraries that make an import heavy, and the one package that adapts each
HEAVY = {
    "torch": {ENGINE, "measurement"},
    "transformers": {ENGINE},
    "datasets": {ENGINE},
    "safetensors": {ENGINE},
    "onnx": {ENGINE},
    "optuna": {"loop"},
    "ray": {"loop"},
    "sqlalchemy": {"loop"},
    "plotly": {"report"},
    "pandas": {"files"},
}


def package_of(module: str) -> str | None:
    """The package a dotted module name belongs to; None outside this project."""
    parts = module.split(".")
    if parts[0] == ENGINE:
        return ENGINE
    if parts[0] != "autoprumux":
        return None
    if len(parts) == 1:
        return "api"
    return parts[1]


def modules() -> dict[str, Path]:
    found = {}
    for top in ("autoprumux", ENGINE):
        for path in sorted((ROOT / top).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """The absolute module names ``path`` imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(package -> the packages it imports, package -> the third-party libraries it imports)."""
    inner: dict[str, set[str]] = defaultdict(set)
    outer: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        package = package_of(name)
        assert package is not None
        for imported in imports(path):
            target = package_of(imported)
            top = imported.split(".")[0]
            if target is not None and target != package:
                inner[package].add(target)
            elif target is None and top not in sys.stdlib_module_names and top != "__future__":
                outer[package].add(top)
    return inner, outer


def test_every_package_has_a_layer():
    packages = {package_of(name) for name in modules()}
    assert packages == set(LAYERS)


def test_packages_import_only_lower_layers_and_form_no_cycle():
    inner, _ = package_graph()
    upward = {
        f"{package} -> {target}"
        for package, targets in inner.items()
        for target in targets - LAYERS[package]
    }
    assert not upward
    graphlib.TopologicalSorter(inner).prepare()  # raises CycleError on a cycle


def engine_part_of(module: str) -> str | None:
    """The engine sub-package of a dotted module name (``trainers.model.encoder`` -> model)."""
    parts = module.split(".")
    return parts[1] if parts[0] == ENGINE and len(parts) > 1 else None


def test_every_engine_module_is_in_a_layered_sub_package():
    engine = [name for name in modules() if package_of(name) == ENGINE and name != ENGINE]
    assert {engine_part_of(name) for name in engine} == set(ENGINE_LAYERS)


def test_engine_sub_packages_import_only_lower_layers_and_form_no_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        part = engine_part_of(name)
        if part is None:
            continue
        graph[part] |= {engine_part_of(i) for i in imports(path)} - {None, part}
    upward = {f"{p} -> {t}" for p, targets in graph.items() for t in targets - ENGINE_LAYERS[p]}
    assert not upward
    graphlib.TopologicalSorter(graph).prepare()


def test_the_core_uses_the_standard_library_only():
    _, outer = package_graph()
    assert outer["core"] == set()


def test_each_heavy_library_is_imported_by_its_adapter_package_only():
    _, outer = package_graph()
    users = {lib: {p for p, libs in outer.items() if lib in libs} for lib in HEAVY}
    assert {lib: found for lib, found in users.items() if found - HEAVY[lib]} == {}


def test_importing_the_public_names_and_the_core_loads_no_heavy_library():
    core = [name for name in modules() if package_of(name) == "core"]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in ["autoprumux", *core])
        + f"print(','.join(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
