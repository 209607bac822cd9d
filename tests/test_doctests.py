"""Every docstring example in the package runs and prints what it shows (``doctest``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import dimalib

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(dimalib.__path__, "dimalib.")
    if not m.name.endswith(".__main__")  # importing it runs the command line
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra (isaacgym, torchrl, ...) that is not installed
        pytest.skip(f"{name}: {exc}")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_are_found() -> None:
    """The walk finds the package's modules and their examples (so the test above can fail)."""
    assert "dimalib.spec" in MODULES and "dimalib.world_model.dynamics.reveal" in MODULES
    finder = doctest.DocTestFinder()
    spec_examples = sum(
        len(t.examples) for t in finder.find(importlib.import_module("dimalib.spec"))
    )
    assert spec_examples >= 4
