"""benchmarks/sweep.py: which runs are finished, and how each run is (re)started."""

from __future__ import annotations

from pathlib import Path

from tests.test_wm_evidence import load_script

sweep = load_script("sweep")


def _args(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    import argparse

    ns = argparse.Namespace(dima_steps=1000, mappo_steps=5000, preset="cpu", extra=list(extra))
    ns.out = tmp_path
    return ns


def _metrics(run: Path, steps: list[int]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i},{s},0.5\n" for i, s in enumerate(steps))
    (run / "metrics.csv").write_text("epoch,env_steps,eval/return_mean\n" + rows)


def test_finished_reads_the_last_metrics_row(tmp_path: Path) -> None:
    args = _args(tmp_path)
    run = tmp_path / "dima-toy-0"
    assert not sweep.finished("dima", run, args)  # no metrics yet
    _metrics(run, [200, 400, 800])
    assert not sweep.finished("dima", run, args)
    _metrics(run, [200, 1000])
    assert sweep.finished("dima", run, args)
    mappo = tmp_path / "mappo-toy-0"
    _metrics(mappo, [4000, 5000])
    assert not sweep.finished("mappo", mappo, args)  # the learner file is written last
    (mappo / "mappo.pt").write_bytes(b"")
    assert sweep.finished("mappo", mappo, args)


def test_command_resumes_a_dima_run_from_its_checkpoint(tmp_path: Path) -> None:
    args = _args(tmp_path, "--set", "wm_warmup_transitions=400")
    run = tmp_path / "dima-toy-3"
    fresh = sweep.command("dima", "toy", 3, run, args)
    assert fresh[fresh.index("--seed") + 1] == "3" and "--resume" not in fresh
    assert fresh[-2:] == ["--set", "wm_warmup_transitions=400"] and "--threads" in fresh
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    resumed = sweep.command("dima", "toy", 3, run, args)
    assert resumed[resumed.index("--resume") + 1] == str(run / "checkpoint.pt")
    assert resumed[resumed.index("--total-env-steps") + 1] == "1000"
    mappo = sweep.command("mappo", "toy", 1, tmp_path / "mappo-toy-1", args)
    assert mappo[mappo.index("--total-env-steps") + 1] == "5000"
