"""The code of the documentation's tutorials runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_own_env_tutorial_runs(capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = _python_blocks(DOCS / "tutorials" / "own_env.md")
    exec(compile(code, "own_env.md", "exec"), {"__name__": "tutorial"})
    assert capsys.readouterr().out.strip() == "torch.Size([8, 16]) torch.Size([8])"


def test_every_api_page_target_is_importable() -> None:
    import importlib

    targets = re.findall(r"^::: ([\w.]+)$", (DOCS / "api.md").read_text(), flags=re.M)
    assert len(targets) > 30
    for target in targets:
        module, _, name = target.rpartition(".")
        try:
            importlib.import_module(target)  # a module
        except ImportError:
            assert hasattr(importlib.import_module(module), name), target
