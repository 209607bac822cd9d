"""Developer sessions: `nox -s tests`, `slow`, `lint`, `typecheck`, `bench`, `docs`, `benchmarl`.

Every session installs the CPU build of torch first (an unpinned torch would pull a multi-GB CUDA
build), then the project.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

TORCH = os.environ.get("DIMALIB_TORCH", "torch==2.13.0")


def _install(session: nox.Session, extras: str = "dev,mamujoco,torchrl,plot,tensorboard") -> None:
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The default suite (fast; everything not marked slow), one worker per core."""
    _install(session)
    session.run("pytest", "-m", "not slow", "-q", "-n", "2", "--durations=15", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Only the tests marked slow (learning runs, long rollouts)."""
    _install(session)
    session.run("pytest", "-m", "slow", "-q", "-n", "2", "--durations=15", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on src/."""
    _install(session)
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark script in benchmarks/ (prints tables; figures go to docs/benchmarks.md)."""
    _install(session)
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session
def benchmarl(session: nox.Session) -> None:
    """examples/benchmarl_mappo.py's test with BenchMARL 1.5.2 (not a default session).

    BenchMARL 1.5.2 needs torchrl<0.12 (pip picks torchrl 0.11.1, tensordict 0.11.0); torch is
    pinned in the same command so pip keeps it. BenchMARL requires torchvision but the example
    never uses it, and PyPI's torchvision next to a CPU torch breaks TorchRL's import (``operator
    torchvision::nms does not exist``), so it is uninstalled.
    """
    session.install(TORCH)
    session.install(TORCH, "-e", ".[torchrl]", "benchmarl==1.5.2", "pytest>=8")
    session.run("python", "-m", "pip", "uninstall", "-y", "torchvision")
    session.run("python", "-c", "import torch, torchrl, benchmarl; print(torch.__version__, "
                "torchrl.__version__, benchmarl.__version__)")  # fmt: skip
    session.run("pytest", "-q", "tests/test_benchmarl.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs-material + mkdocstrings) with --strict into site/."""
    _install(session, extras="docs")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", *session.posargs)
