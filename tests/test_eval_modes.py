"""benchmarks/eval_modes.py --csv: evaluations against the collection rate, by hand-computed values."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from tests.test_wm_evidence import ROOT, load_script

if str(ROOT / "benchmarks") not in sys.path:  # the script imports its sibling _common
    sys.path.insert(0, str(ROOT / "benchmarks"))
modes = load_script("eval_modes")


def test_csv_rows_against_hand_computed_values(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    rows = [  # (env_steps, eval return, eval std, collect reward per step)
        (40_000, 900.0, 10.0, 1.0),  # before --from-steps: left out
        (50_000, 1000.0, 20.0, 1.0),
        (55_000, 400.0, 300.0, 1.2),  # below half of 1200: counted; a fall of 600
        (60_000, 1100.0, 40.0, 1.1),
    ]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "eval/return_mean", "eval/return_std", "collect/reward_mean"])
        for steps, ret, std, rate in rows:
            w.writerow([steps, ret, std, rate])
            w.writerow([steps + 200, "", "", 10.0])  # an epoch outside the window (200 > 100)
    (out,) = modes.csv_rows([path], from_steps=50_000, window=100)
    assert out[0] == tmp_path.name  # a run folder's metrics.csv is named by its folder
    assert out[1:] == (
        "3",
        "833",  # (1000 + 400 + 1100) / 3
        "1100",  # 1000 × (1.0 + 1.2 + 1.1) / 3
        "1/3",
        "40",  # median of 20, 300, 40
        "600 (1000 → 400 at 55,000)",
    )


def test_csv_rows_report_no_fall_when_evaluations_only_rise(tmp_path: Path) -> None:
    path = tmp_path / "rising.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "eval/return_mean", "eval/return_std", "collect/reward_mean"])
        w.writerows([(50_000, 100.0, 5.0, 0.5), (55_000, 300.0, 7.0, 0.5)])
    (out,) = modes.csv_rows([path], from_steps=50_000, window=100)
    # 100 < 500 / 2 is counted below half the rate; the last column stays empty
    assert out == ("rising", "2", "200", "500", "1/2", "6", "")
