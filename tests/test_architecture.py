"""The package's import rules (docs/architecture.md), checked on the source files themselves."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dimalib"

# lower layers never import higher ones; packages of one rank do not import each other
RANK = {
    "_compat": 0,
    "utils": 0,
    "spec": 1,
    "world_model": 2,
    "data": 3,
    "envs": 3,
    "algorithms": 3,
    "viz": 4,
    "testing": 4,  # test doubles (import envs)
    "imagination": 4,
    "evaluation": 5,
    "training": 6,
    "cli": 9,  # the application: may import the top-level package
    "": 8,  # dimalib/__init__.py
    # deprecated aliases of moved modules (kept for old imports and pickles)
    "diffusion": 3,
    "models": 3,
}
# compatibility shims that re-export a moved module from its old place
SHIMS = {"dimalib.envs.render"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def test_every_package_has_a_rank() -> None:
    assert {_package(m) for m in _modules()} <= set(RANK)


def test_no_upward_or_sideways_imports() -> None:
    bad = []
    for module, tree in _modules().items():
        if module in SHIMS:
            continue
        own = _package(module)
        for target, _names in _imports(tree):
            if not target.startswith("dimalib"):
                continue
            other = _package(target)
            if other != own and not RANK[other] < RANK[own]:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_module_imports_a_private_name_of_another() -> None:
    bad = []
    for module, tree in _modules().items():
        for target, names in _imports(tree):
            if target.startswith("dimalib") and target != module:
                bad += [
                    f"{module}: {target}.{n}"
                    for n in names
                    if n.startswith("_") and not n.endswith("__")
                ]
    assert not bad, "\n".join(bad)


def test_new_code_uses_the_new_paths() -> None:
    """Only the alias packages themselves import from the deprecated locations."""
    old = ("dimalib.diffusion", "dimalib.models", "dimalib.data.normalizer", "dimalib.envs.render")
    bad = []
    for module, tree in _modules().items():
        if module.startswith(old):
            continue
        bad += [f"{module} imports {t}" for t, _ in _imports(tree) if t.startswith(old)]
    assert not bad, "\n".join(bad)
