"""The package layout is the data-flow diagram of docs/architecture.md: imports point one way.

Every `import` of project code (module level or inside functions) is read with `ast`; a module
may import only from its own layer or a lower one, packages of one layer never import each
other, and the module graph has no cycle.
"""

from __future__ import annotations

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]

# Lower number = lower layer. Top-level modules of mim4d_jax (entry points such as train,
# evaluate, probe) sit above everything; `user_errors` below everything.
LAYERS = {
    "mim4d_jax.user_errors": 0,
    "mim4d_jax.atomic_files": 0,
    "mim4d_jax.geometry": 1,
    "mim4d_jax.data": 2,
    "mim4d_jax.models": 2,
    "data_prep": 3,
    "mim4d_jax.rendering": 3,
    "mim4d_jax.objectives": 4,
    "mim4d_jax.training": 5,
    "mim4d_jax.evaluation": 6,
    "mim4d_jax.interop": 6,
    # Entry-point package kept for `python -m mim4d_jax.torch_ref.verify`.
    "mim4d_jax.torch_ref": 7,
}
ENTRY_LAYER = 7


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path, module: str, modules: set[str]) -> set[str]:
    """Project modules imported anywhere in the file (relative imports resolved). `from pkg
    import sub` counts as an import of `pkg.sub` only, not of the package `pkg`."""
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {name for name in found if name.split(".")[0] in ("mim4d_jax", "data_prep")}


def _graph() -> dict[str, set[str]]:
    files = [*REPO.joinpath("mim4d_jax").rglob("*.py"), *REPO.joinpath("data_prep").rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        if name in ("mim4d_jax", "data_prep"):
            continue
        # Keep only names that are modules (drop imported functions and classes) and leave
        # out the root packages, whose __init__ imports nothing (`from mim4d_jax import x`).
        graph[name] = {
            imp
            for imp in _imports(path, name, set(modules))
            if imp in modules and imp != name and imp not in ("mim4d_jax", "data_prep")
        }
    return graph


def _layer(module: str) -> tuple[str, int]:
    for prefix, rank in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, rank
    if module.count(".") == 1 and module.startswith("mim4d_jax."):
        return "entry points", ENTRY_LAYER  # they may import each other (probe -> train)
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def _layer_problems(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, imports in graph.items():
        package, rank = _layer(module)
        for imp in imports:
            imp_package, imp_rank = _layer(imp)
            if imp_rank > rank or (imp_rank == rank and imp_package != package):
                problems.append(f"{module} (layer {rank}) imports {imp} (layer {imp_rank})")
    return sorted(problems)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_lower_layers_never_import_higher_ones():
    problems = _layer_problems(_graph())
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_planted_violations():
    """A lower layer importing a higher one, a cross import within a layer and a cycle are
    all reported (on the real graph with one edge added)."""
    graph = {k: set(v) for k, v in _graph().items()}
    graph["mim4d_jax.geometry.grid"].add("mim4d_jax.training.step")
    graph["mim4d_jax.models.warp"].add("mim4d_jax.data.batch")
    problems = _layer_problems(graph)
    assert any("geometry.grid (layer 1) imports mim4d_jax.training.step" in p for p in problems)
    assert any("models.warp (layer 2) imports mim4d_jax.data.batch" in p for p in problems)
    graph["mim4d_jax.geometry.trilinear"].add("mim4d_jax.models.warp")  # warp imports trilinear
    assert _find_cycle(graph) is not None
