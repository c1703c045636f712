"""The layering of edgecls, read from its imports: lower layers never import higher ones, no cycles.

Every import counts, at module level or inside a function, absolute or relative: a function-level
import of a higher layer still makes the lower layer depend on it, only later. The implicit import
of a module's parent packages (importing ``edgecls.models.registry`` runs ``edgecls/__init__.py``)
is not an edge.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "edgecls"

# Lowest first. A module may import its own layer and the layers below it.
CORE_MODULES = {"errors", "faults", "fsutil", "publish", "tf", "sidecar", "model_metadata", "config", "configs", "metrics", "progress",
                "timing", "run_folder", "formats", "run_lock", "results"}
API_MODULES = {"__init__", "api", "demo"}
# devices sits on deploy (it runs deploy's pi_infer.py on the device) and below searching, so optimize can time
# candidates there; like deploy it needs no TensorFlow.
LAYERS = ["core", "data", "models", "deploy", "devices", "training", "converters", "compression", "searching", "architecture_search",
          "insight|benchmarking",
          "html_report", "api", "cli"]
SIBLINGS_THAT_NEVER_MEET = {"insight", "benchmarking"}
TENSORFLOW_ROOTS = {"tensorflow", "tf_keras", "keras"}
TF_MODULE = "edgecls.tf"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def unit_of(module: str) -> str:
    """The top-level piece a module belongs to: a subpackage name, or a top-level module's name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def layer_of(module: str) -> tuple[int, str] | None:
    """(rank, layer name) of an edgecls module; None when the layering does not place it."""
    unit = unit_of(module)
    if unit in CORE_MODULES:
        name = "core"
    elif unit in API_MODULES:
        name = "api"
    elif unit == "__main__":
        name = "cli"
    elif unit in SIBLINGS_THAT_NEVER_MEET:
        name = "insight|benchmarking"
    elif unit in LAYERS:
        name = unit
    else:
        return None
    return LAYERS.index(name), name


def imported_names(path: Path, module: str, modules: dict[str, Path]):
    return imports_in_source(path.read_text(encoding="utf-8"), module, is_package(path), modules)


def imports_in_source(source: str, module: str, package_init: bool, modules: dict[str, Path]):
    """Yield (line, imported module) for every import in the source, edgecls or not.

    ``from X import y`` imports the module ``X.y`` when there is one, else ``X`` itself.
    """
    package = module if package_init else module.rpartition(".")[0]
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if candidate in modules else base


def edgecls_edges():
    """(importer, imported, file:line) for every import between two edgecls modules."""
    modules = all_modules()
    edges = []
    for module, path in modules.items():
        for line, name in imported_names(path, module, modules):
            target = _known_module(name, modules)
            if target is None or target == module:
                continue
            edges.append((module, target, f"{path.relative_to(PACKAGE_DIR.parent)}:{line}"))
    return edges


def _known_module(name: str, modules: dict[str, Path]) -> str | None:
    # `import edgecls.models.registry` names the deepest module that exists.
    if name != "edgecls" and not name.startswith("edgecls."):
        return None
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one node, each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _cycle_message(components, edges, key) -> str:
    lines = []
    for component in components:
        members = set(component)
        inside = [f"    {a} -> {b}  ({where})" for a, b, where in edges if key(a) in members and key(b) in members
                  and key(a) != key(b)]
        lines.append(f"  cycle among {', '.join(component)}:\n" + "\n".join(sorted(set(inside))))
    return "\n".join(lines)


def test_every_module_has_a_layer():
    unplaced = sorted(module for module in all_modules() if layer_of(module) is None)
    assert not unplaced, ("modules the layering does not place (add them to a layer in tests/test_layers.py): "
                          + ", ".join(unplaced))


def test_no_module_imports_a_higher_layer():
    wrong = []
    for importer, imported, where in edgecls_edges():
        source, target = layer_of(importer), layer_of(imported)
        if source is None or target is None:
            continue  # reported by test_every_module_has_a_layer
        if target[0] > source[0]:
            wrong.append(f"  {where}: {importer} ({source[1]}) imports {imported} ({target[1]})")
    assert not wrong, "imports from a higher layer (order: " + " < ".join(LAYERS) + "):\n" + "\n".join(sorted(set(wrong)))


def test_insight_and_bench_never_import_each_other():
    crossing = [f"  {where}: {importer} imports {imported}" for importer, imported, where in edgecls_edges()
                if {unit_of(importer), unit_of(imported)} == SIBLINGS_THAT_NEVER_MEET]
    assert not crossing, "insight and benchmarking must not depend on each other:\n" + "\n".join(sorted(set(crossing)))


def test_no_import_cycle_between_subpackages():
    edges = edgecls_edges()
    graph = defaultdict(set)
    for importer, imported, _ in edges:
        if unit_of(importer) != unit_of(imported):
            graph[unit_of(importer)].add(unit_of(imported))
    components = strongly_connected(graph)
    assert not components, "import cycles between subpackages:\n" + _cycle_message(components, edges, unit_of)


def test_no_import_cycle_between_modules():
    edges = edgecls_edges()
    graph = defaultdict(set)
    for importer, imported, _ in edges:
        graph[importer].add(imported)
    components = strongly_connected(graph)
    assert not components, "import cycles between modules:\n" + _cycle_message(components, edges, lambda m: m)


def test_only_edgecls_tf_imports_tensorflow():
    modules = all_modules()
    direct = []
    for module, path in modules.items():
        if module == TF_MODULE:
            continue
        for line, name in imported_names(path, module, modules):
            if name.split(".")[0] in TENSORFLOW_ROOTS:
                direct.append(f"  {path.relative_to(PACKAGE_DIR.parent)}:{line}: import {name}")
    assert not direct, f"TensorFlow and Keras are imported only through {TF_MODULE} (it sets TF_USE_LEGACY_KERAS first):\n" \
        + "\n".join(direct)


def _imports_of(source: str) -> list[str]:
    modules = {**all_modules(), "edgecls.models._probe": PACKAGE_DIR / "models" / "_probe.py"}
    return [name for _, name in imports_in_source(source, "edgecls.models._probe", False, modules)]


def test_the_import_reader_sees_every_kind_of_import():
    source = ("import edgecls.benchmarking.timing\n"
              "from edgecls import errors, __version__\n"
              "from . import registry\n"
              "from ..deploy.runtimes import open_model\n"
              "def later():\n"
              "    from edgecls.insight import grad_cam\n")
    assert _imports_of(source) == ["edgecls.benchmarking.timing", "edgecls.errors", "edgecls", "edgecls.models.registry",
                                   "edgecls.deploy.runtimes", "edgecls.insight.grad_cam"]
    assert layer_of("edgecls.models._probe") == (2, "models")
    assert layer_of("edgecls.cli.report") == (LAYERS.index("cli"), "cli") and layer_of("edgecls.deploy.cli_commands")[1] == "deploy"
    assert layer_of("edgecls.benchmarking.harness") == layer_of("edgecls.insight.tta")
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


BLOCK_TENSORFLOW = """
import sys
class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tf2onnx"):
            raise ImportError("importing " + name + " is blocked in this test")
        return None
sys.meta_path.insert(0, _NoTensorFlow())
"""

PREDICT_BOTH = BLOCK_TENSORFLOW + """
import json
import numpy as np
from edgecls.deploy.runtimes import open_model
images = np.load(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    model = open_model(path)
    out[path] = {"runtime": model.name, "labels": model.labels, "probs": model.predict(images).tolist()}
print(json.dumps(out))
"""


def test_deploy_runtimes_predict_with_tflite_and_onnx_where_tensorflow_cannot_be_imported(deploy_run, tmp_path):
    import json

    import numpy as np
    from deploy_helpers import onnx_model

    from edgecls.deploy.runtimes import open_model

    models = [deploy_run / "exports" / "int8.tflite", onnx_model(tmp_path / "mean_colour.onnx")]
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run([sys.executable, "-c", PREDICT_BOTH, str(tmp_path / "images.npy"), *map(str, models)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert [results[str(path)]["runtime"] for path in models] == ["tflite", "onnx"]
    for path in models:
        expected = open_model(path).predict(images)  # the same runtime here, where TensorFlow is loaded
        np.testing.assert_allclose(np.array(results[str(path)]["probs"]), expected, atol=1e-6)
        assert results[str(path)]["labels"] == ["a", "b", "c"]


def test_the_blocker_really_blocks_tensorflow():
    done = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW + "import tensorflow\n"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "blocked in this test" in done.stderr


@pytest.mark.parametrize("module", ["edgecls", "edgecls.results", "edgecls.deploy.runtimes", "edgecls.deploy.prediction",
                                    "edgecls.devices.session", "edgecls.devices.readiness"])
def test_importing_the_light_modules_does_not_load_tensorflow(module):
    done = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW + f"import {module}\n"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_no_public_api_name_is_also_a_module_name():
    # Nouns for packages and modules, verbs for the API: `import edgecls.training.trainer` can then never
    # hide `edgecls.train()`, and every module is reachable by its dotted name (pydoc, monkeypatch strings).
    import edgecls

    clashes = sorted(f"edgecls.{name} and {module}" for module in all_modules() for name in edgecls.__all__
                     if module.split(".")[-1] == name)
    assert not clashes, "public API names that are also module names: " + ", ".join(clashes)


def test_a_submodule_import_leaves_the_api_function_in_place():
    done = subprocess.run([sys.executable, "-c", "import edgecls, edgecls.training.trainer as t\n"
                           "import edgecls.searching.variant_search, edgecls.benchmarking.harness, edgecls.html_report\n"
                           "assert callable(edgecls.train) and callable(edgecls.optimize) and callable(edgecls.bench)\n"
                           "assert callable(edgecls.report) and t.train is not edgecls.train\n"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
