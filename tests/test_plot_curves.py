"""benchmarks/plot_curves.py: interquartile mean, bootstrap intervals and the aggregate table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_wm_evidence import load_script

pytest.importorskip("matplotlib")
curves = load_script("plot_curves")


def test_iqm_against_hand_computed_values() -> None:
    assert curves.iqm(np.array([100.0, 1.0, 3.0, 2.0, 4.0])) == 3.0  # cut one each end of 5
    assert curves.iqm(np.array([0.0, 10.0, 20.0, 1000.0])) == 15.0  # cut one each end of 4
    assert curves.iqm(np.array([7.0, 9.0, 8.0])) == 8.0  # n = 3: nothing cut


def test_bootstrap_interval_holds_the_statistic_and_is_degenerate_for_equal_values() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    lo, hi = curves.bootstrap_ci(x, reps=2000)
    assert lo <= curves.iqm(x) <= hi and lo >= 1.0 and hi <= 5.0 and hi > lo
    assert curves.bootstrap_ci(np.full(5, 2.5), reps=200) == (2.5, 2.5)
    assert all(np.isnan(v) for v in curves.bootstrap_ci(np.array([1.0])))


def _run(folder: Path, points: list[tuple[int, float]]) -> None:
    folder.mkdir(parents=True)
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["env_steps", "eval/return_mean", "time/total_s"])
        w.writeheader()
        for i, (steps, ret) in enumerate(points):
            w.writerow({"env_steps": steps, "eval/return_mean": ret, "time/total_s": 60 * (i + 1)})
            w.writerow({"env_steps": steps + 1, "eval/return_mean": "", "time/total_s": ""})


def test_aggregate_table_and_small_csvs(tmp_path: Path) -> None:
    for s, final in enumerate([10.0, 20.0, 30.0, 40.0, 500.0]):
        _run(tmp_path / f"a-{s}", [(5000, 1.0), (10000, final)])
    _run(tmp_path / "b-0", [(10000, 3.0)])
    _run(tmp_path / "a-short", [(5000, 2.0)])  # stopped early: left out at 10000
    _run(tmp_path / "a-new", [])  # just started, no evaluation yet: skipped
    summary = curves.main([
        "--glob", f"A={tmp_path}/a-*", "--run", f"B={tmp_path}/b-0", "--at", "5000", "10000",
        "--out", str(tmp_path / "c.png"), "--summary", str(tmp_path / "s.json"),
        "--copy-csv", str(tmp_path / "csv"), "--bootstrap", "500",
    ])  # fmt: skip
    a = summary["groups"]["A"]["at"]
    assert a["5000"]["n"] == 6 and len(summary["groups"]["A"]["runs"]) == 6
    assert a["10000"]["n"] == 5 and a["10000"]["mean"] == 120.0 and a["10000"]["iqm"] == 30.0
    assert a["5000"]["iqm"] == 1.0  # 1, 1, 1, 1, 1, 2: the middle four
    lo, hi = a["10000"]["ci95_iqm"]
    assert 10.0 <= lo <= 30.0 <= hi <= 500.0
    # the last evaluation at or before the step count; B has none at 5000
    assert "5000" not in summary["groups"]["B"]["at"]
    assert summary["groups"]["B"]["runs"][0]["returns_at"] == {"5000": None, "10000": 3.0}
    assert summary["groups"]["A"]["runs"][0]["wall_minutes"] == 2.0
    assert json.loads((tmp_path / "s.json").read_text()) == summary
    assert (tmp_path / "c.png").stat().st_size > 1000
    with open(tmp_path / "csv" / "A-a-0.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["eval/return_mean"] for r in rows] == ["1.0", "10.0"]  # evaluation rows only


def test_dip_check_against_hand_computed_values() -> None:
    steps = np.array([5000.0, 10000.0, 15000.0, 20000.0, 25000.0])
    falls = curves.dip(steps, np.array([0.0, -100.0, -130.0, 50.0, 400.0]), 10000)
    assert falls == {"ref": -100.0, "min_after": -130.0, "min_at": 15000, "fell": True}
    holds = curves.dip(steps, np.array([0.0, -100.0, -115.0, 50.0, 400.0]), 10000)
    assert holds["fell"] is False and holds["min_after"] == -115.0  # 15% lower: within 20%
    rising = curves.dip(steps, np.array([0.0, 100.0, 90.0, 300.0, 400.0]), 10000)
    assert rising["fell"] is False  # 10% below a positive reference
    assert curves.dip(steps[:2], np.array([0.0, 1.0]), 10000)["ref"] is None  # nothing after


def test_metric_selects_the_sampled_evaluation_column(tmp_path: Path) -> None:
    """``--metric eval/sampled_return_mean`` aggregates that column, and --copy-csv keeps it."""
    for s, (mean_action, sampled) in enumerate([(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)]):
        folder = tmp_path / f"r-{s}"
        folder.mkdir()
        with open(folder / "metrics.csv", "w", newline="") as f:
            cols = ["env_steps", "eval/return_mean", "eval/sampled_return_mean", "time/total_s"]
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerow(dict(zip(cols, [5000, mean_action, sampled, 60], strict=True)))
    args = ["--glob", f"R={tmp_path}/r-*", "--at", "5000", "--bootstrap", "100"]
    plain = curves.main([*args, "--out", str(tmp_path / "a.png")])
    sampled = curves.main([
        *args, "--metric", "eval/sampled_return_mean", "--out", str(tmp_path / "b.png"),
        "--copy-csv", str(tmp_path / "csv"),
    ])  # fmt: skip
    assert plain["groups"]["R"]["at"]["5000"]["mean"] == 2.0
    assert sampled["groups"]["R"]["at"]["5000"]["mean"] == 20.0
    with open(tmp_path / "csv" / "R-r-0.csv") as f:
        assert next(csv.DictReader(f))["eval/sampled_return_mean"] == "10.0"
