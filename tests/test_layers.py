"""The import rules of STYLE.md, checked on the source: no circles, layers point down.

Every ``import`` in model/, worker/ and service/ counts, also those inside functions and
under ``TYPE_CHECKING``: a circle that only exists lazily is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "worker", "service")

#: model's rooms, lowest first; a module may import its own rank and those below.
MODEL_LAYERS: dict[str, int] = {
    **dict.fromkeys(("config", "classes", "imageio", "tensors", "checkpoint", "inference", "pipeline",
                     "report", "package", "device", "allocator", "errors", "arguments", "nets"), 0),
    **dict.fromkeys(("training", "evaluation", "augmentation"), 1),
    **dict.fromkeys(("bench", "baselines", "experiments"), 2),
    "cli": 3,
}
#: The baselines' networks and serving files are served like ours (model.pipeline loads
#: them), so these modules sit in the core layer although they live with the baselines.
MODULE_LAYERS: dict[str, int] = dict.fromkeys(
    ("model.baselines.config", "model.baselines.nets", "model.baselines.serving",
     "model.baselines.inference"), 0)


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = REPO, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its body)."""
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    return {name: _imports(name, path, files) for name, path in files.items()}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(_nearest(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, is_package, node.module, node.level)
            for alias in node.names:
                # ``from pkg import mod`` imports the submodule; ``from mod import name`` the module
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else _nearest(base, known))
    out.discard("")
    return out


def _absolute(name: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = name.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (level - 1)]
    return ".".join(anchor + ([module] if module else []))


def _nearest(dotted: str, known: dict[str, Path]) -> str:
    """The project module a dotted name lives in ('' for third-party modules)."""
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return ""


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the directed graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def room(module: str) -> str:
    """model.training.data -> training; model.pipeline -> pipeline; model -> model.

    The core modules of MODULE_LAYERS are rooms of their own (baselines.inference).
    """
    if module in MODULE_LAYERS:
        return module.removeprefix("model.")
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up: model's layers, packages, and into model.cli."""
    bad = []
    for source, targets in graph.items():
        for target in targets:
            if why := _violation(source, target):
                bad.append(f"{source} -> {target}: {why}")
    return sorted(bad)


def _violation(source: str, target: str) -> str | None:
    src_pkg, dst_pkg = source.split(".")[0], target.split(".")[0]
    if src_pkg == "model" and dst_pkg in ("worker", "service"):
        return "model imports neither worker nor service"
    if src_pkg == "worker" and dst_pkg == "service":
        return "nothing imports service"
    in_cli = target == "model.cli" or target.startswith("model.cli.")
    if in_cli and not (source == "service.cli" or source.startswith("model.cli")):
        return "only service.cli imports model.cli"
    if src_pkg == dst_pkg == "model":
        src_rank, dst_rank = _rank(source), _rank(target)
        if dst_rank > src_rank:
            return f"layer {room(source)} ({src_rank}) imports layer {room(target)} ({dst_rank})"
    return None


def _rank(module: str) -> int:
    name = room(module)
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    if name == "model":
        return 0
    if name not in MODEL_LAYERS:
        raise AssertionError(f"{module} is in no layer: add {name!r} to MODEL_LAYERS")
    return MODEL_LAYERS[name]


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between model's rooms (sub-packages and core modules)."""
    rooms: dict[str, set[str]] = {}
    for source, targets in graph.items():
        if not source.startswith("model."):
            continue
        edges = rooms.setdefault(room(source), set())
        edges.update(room(t) for t in targets if t.startswith("model.") and room(t) != room(source))
    return rooms


# ---- the checks ------------------------------------------------------------------------------
GRAPH = import_graph()


def test_graph_sees_lazy_and_type_checking_imports() -> None:
    assert "model.checkpoint" in GRAPH["model.pipeline"]  # module level
    assert "model.training.data" in GRAPH["model.training.train"]
    assert "model.cli" in GRAPH["service.cli"]  # ``from model import cli``


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_between_modules(package: str) -> None:
    sub = {k: {t for t in v if t.split(".")[0] == package} for k, v in GRAPH.items()
           if k.split(".")[0] == package}
    assert find_cycle(sub) is None, f"import cycle: {' -> '.join(find_cycle(sub) or [])}"


def test_no_import_cycle_between_model_rooms() -> None:
    rooms = room_graph(GRAPH)
    assert find_cycle(rooms) is None, f"cycle between rooms: {' -> '.join(find_cycle(rooms) or [])}"


def test_imports_point_down() -> None:
    assert layer_violations(GRAPH) == []


# ---- the checker itself can fail ---------------------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_lazy_cycle_and_upward_imports(tmp_path: Path) -> None:
    _write(tmp_path, {
        "model/__init__.py": "",
        "model/pipeline.py": "def f():\n    from model.training import train\n",
        "model/training/__init__.py": "",
        "model/training/train.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from model import pipeline\nfrom worker import jobs\n",
        "model/bench/__init__.py": "",
        "model/bench/generate.py": "from model.cli import resolve_model\n",
        "model/cli/__init__.py": "",
        "worker/__init__.py": "",
        "worker/jobs.py": "from . import queue\n",
        "worker/queue.py": "from .jobs import x\nimport service.app\n",
        "service/__init__.py": "",
        "service/app.py": "",
    })
    graph = import_graph(tmp_path)
    assert find_cycle(graph) == ["model.pipeline", "model.training.train", "model.pipeline"]
    assert find_cycle({k: v for k, v in graph.items() if k.startswith("worker")}) == [
        "worker.jobs", "worker.queue", "worker.jobs"]
    assert layer_violations(graph) == [
        "model.bench.generate -> model.cli: only service.cli imports model.cli",
        "model.pipeline -> model.training.train: layer pipeline (0) imports layer training (1)",
        "model.training.train -> worker.jobs: model imports neither worker nor service",
        "worker.queue -> service.app: nothing imports service",
    ]
