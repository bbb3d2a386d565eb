"""The house's import graph: every module imports only rooms below it; nn only the engine and the registry;
the library never imports the application shell."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "microgd"

# Each room may import rooms of a lower rank only (the package's face, __init__, imports the engine).
RANKS = {
    "rules": 0, "checks": 0, "files": 0, "table": 0,
    "data": 1, "engine": 1, "symbolic": 1, "torch_bridge": 1,
    "codegen": 2, "nn": 2, "losses": 2, "optim": 2, "drawing": 2,
    "playground.datasets": 2,
    "compiled": 3, "testing": 3, "tape": 3, "viz": 3, "stepper": 3, "plot": 3, "explain": 3, "layers": 3,
    "check": 4, "fused_program": 4, "app.formula": 4, "app.modelfile": 4, "playground.run": 4,
    "train": 5, "fused": 5,
    "app.pipeline": 6, "app.demo": 6, "playground.session": 6,
    "playground.record": 7,
    "playground.server": 8,
    "playground.jupyter": 9,
    "app.cli": 10,
    "__main__": 11,
}


def imported(module: str) -> set[str]:
    """The microgd modules ``module`` imports (anywhere in it, lazily too), by dotted name below microgd."""
    path = PACKAGE / (module.replace(".", "/") + ".py")
    package = module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            names = [".".join([*base, node.module])] if node.module else [".".join([*base, a.name]) for a in node.names]
            found.update(name for name in names if name.split(".")[0] in {m.split(".")[0] for m in RANKS})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found.update(m.removeprefix("microgd.") for m in modules if m.startswith("microgd."))
    return found


def test_every_module_is_ranked():
    modules = {str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".") for p in PACKAGE.rglob("*.py")}
    assert modules - {"__init__", "app.__init__", "playground.__init__"} == set(RANKS)


@pytest.mark.parametrize("module", RANKS)
def test_imports_point_down(module):
    upward = {name for name in imported(module) if RANKS.get(name, -1) >= RANKS[module]}
    assert not upward, f"{module} imports {upward}, not below it"


def test_the_engine_imports_only_the_registry():
    """The core a learner reads: the engine stands on the op registry alone."""
    assert imported("engine") == {"rules"}


def test_nn_imports_only_the_core():
    """The engine, the registry, the input checks, and the bridge to PyTorch (plain data in, torch modules out;
    torch itself imported only when called): never data, files or the application."""
    assert imported("nn") == {"engine", "rules", "checks", "torch_bridge"}
    assert imported("torch_bridge") == {"rules"}
