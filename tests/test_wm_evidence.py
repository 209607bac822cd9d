"""The world-model evidence pieces: metrics, the MBPO ensemble baseline, the benchmark scripts."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from dimalib.evaluation import one_step_error, open_loop_states, order_spread
from dimalib.spec import MultiAgentSpec
from dimalib.world_model import EnsembleConfig, ProbabilisticEnsemble

ROOT = Path(__file__).resolve().parents[1]
SPEC = MultiAgentSpec(("a", "b"), (3, 3), (1, 2), state_dim=4)
TINY = EnsembleConfig(members=3, hidden_dim=32, hidden_layers=2)


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ metrics
def test_one_step_error_against_hand_computed_value() -> None:
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    true = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    # |1|/1, |2|/2, 0/1, |4|/2 -> (1 + 1 + 0 + 2) / 4
    assert float(one_step_error(pred, true, torch.tensor([1.0, 2.0]))) == pytest.approx(1.0)
    assert float(one_step_error(pred, true)) == pytest.approx(7 / 4)
    with pytest.raises(ValueError, match="target"):
        one_step_error(pred, true[:1])


def test_order_spread_against_hand_computed_value() -> None:
    curves = torch.tensor([[1.0, 2.0, 4.0], [3.0, 2.0, 2.0]])
    # max - min = [2, 0, 2]; mean = [2, 2, 3]
    torch.testing.assert_close(order_spread(curves), torch.tensor([1.0, 0.0, 2 / 3]))
    with pytest.raises(ValueError, match="curves"):
        order_spread(curves[:1])


# ---------------------------------------------------------------- ensemble
def _batch(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    states = torch.randn(n, 3, SPEC.state_dim, generator=generator)
    actions = torch.rand(n, 3, SPEC.joint_action_dim, generator=generator) * 2 - 1
    # known dynamics: s' = s + M a (+ a small state-dependent term)
    M = torch.tensor([[0.5, 0.0, 0.2], [0.0, -0.3, 0.1], [0.4, 0.4, 0.0], [0.0, 0.0, -0.6]])
    nxt = states[:, -1] + actions[:, -1] @ M.T + 0.1 * torch.tanh(states[:, -1])
    return {"states": states, "actions": actions, "next_state": nxt}


def test_gaussian_nll_against_hand_computed_value() -> None:
    model = ProbabilisticEnsemble(SPEC, EnsembleConfig(members=1, hidden_dim=8, hidden_layers=1))
    S = SPEC.state_dim
    mu, raw = 0.3, 0.0
    with torch.no_grad():  # the head ignores its input: mean mu, raw log-variance 0
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([mu] * S + [raw] * S))
    batch = _batch(5, torch.Generator().manual_seed(0))
    model.eval()  # no normaliser update: mean 0, std 1, so the target is s' − s
    loss, info = model.loss(batch)

    def softplus(x: float) -> float:
        return math.log1p(math.exp(x))

    lv = 0.5 - softplus(0.5 - raw)  # soft upper bound at 0.5
    lv = -10.0 + softplus(lv + 10.0)  # soft lower bound at -10
    y = batch["next_state"] - batch["states"][:, -1]
    nll = 0.5 * float(((mu - y) ** 2 * math.exp(-lv) + lv).mean())
    bound = 0.01 * (S * 0.5 - S * -10.0)
    assert float(info["nll"]) == pytest.approx(nll, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(nll + bound, rel=1e-5)


def test_batched_members_equal_a_loop_over_single_mlps() -> None:
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(SPEC, TINY).eval()
    model.normalizer.update(torch.randn(100, SPEC.state_dim) * 3 + 1)
    batch = _batch(7, torch.Generator().manual_seed(1))
    mean, logvar = model(batch["states"], batch["actions"])
    x = model._inputs(batch["states"], batch["actions"])
    for e in range(TINY.members):
        h = x
        for layer in model.layers:
            h = torch.nn.functional.silu(h @ layer.weight[e] + layer.bias[e])
        out = h @ model.head.weight[e] + model.head.bias[e]
        torch.testing.assert_close(mean[e], out[:, : SPEC.state_dim], rtol=1e-5, atol=1e-6)
    assert mean.shape == logvar.shape == (TINY.members, 7, SPEC.state_dim)
    assert bool((logvar <= model.max_logvar).all() and (logvar >= model.min_logvar).all())
    # "mean" mode is the average of the members' means, in environment units
    pred = model.predict_next_state(batch["states"], batch["actions"])
    expect = batch["states"][:, -1] + mean.mean(0) * model.normalizer.std.float()
    torch.testing.assert_close(pred, expect)


def test_ensemble_learns_known_dynamics() -> None:
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(SPEC, TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        loss, _ = model.loss(_batch(64, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = _batch(500, torch.Generator().manual_seed(99))
    pred = model.predict_next_state(test["states"], test["actions"])
    err = one_step_error(pred, test["next_state"])
    copy = one_step_error(test["states"][:, -1], test["next_state"])
    assert float(err) < 0.1 * float(copy), (float(err), float(copy))
    # sampling: reproducible under a generator, spread around the mean prediction
    s1 = model.predict_next_state(test["states"], test["actions"], mode="sample",
                                  generator=torch.Generator().manual_seed(3))  # fmt: skip
    s2 = model.predict_next_state(test["states"], test["actions"], mode="sample",
                                  generator=torch.Generator().manual_seed(3))  # fmt: skip
    torch.testing.assert_close(s1, s2)
    assert float(one_step_error(s1, test["next_state"])) < 0.3 * float(copy)


def test_open_loop_accepts_the_ensemble() -> None:
    torch.manual_seed(0)
    model = ProbabilisticEnsemble(SPEC, TINY).eval()
    b = _batch(6, torch.Generator().manual_seed(0))
    actions = torch.rand(6, 4, SPEC.joint_action_dim) * 2 - 1
    out = open_loop_states(model, b["states"][:, -1:], actions, horizon=4)
    assert out.shape == (6, 4, SPEC.state_dim)
    first = model.predict_next_state(b["states"][:, -1:], actions[:, :1])
    torch.testing.assert_close(out[:, 0], first)
    second = model.predict_next_state(out[:, :1], actions[:, 1:2])
    torch.testing.assert_close(out[:, 1], second)


def test_ensemble_bad_input_errors() -> None:
    model = ProbabilisticEnsemble(SPEC, TINY)
    s, a = torch.zeros(2, 1, SPEC.state_dim), torch.zeros(2, 1, SPEC.joint_action_dim)
    with pytest.raises(ValueError, match="states"):
        model.predict_next_state(torch.zeros(2, 1, 5), a)
    with pytest.raises(ValueError, match="actions"):
        model.predict_next_state(s, torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match="actions"):
        model.predict_next_state(s, a.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="mode"):
        model.predict_next_state(s, a, mode="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="context"):
        ProbabilisticEnsemble(SPEC, EnsembleConfig(context=2)).predict_next_state(s, a)
    with pytest.raises(ValueError, match="next_state"):
        model.loss({"states": s, "actions": a})
    with pytest.raises(ValueError, match="members"):
        EnsembleConfig(members=0)


# --------------------------------------------------------- benchmark scripts
def test_dataset_and_accuracy_scripts_end_to_end(tmp_path: Path) -> None:
    datasets, accuracy = load_script("wm_datasets"), load_script("wm_accuracy")
    data = tmp_path / "data"
    datasets.main(["--env", "HalfCheetah-2x3", "--train-steps", "240", "--heldout-steps", "160",
                   "--num-envs", "2", "--episode-len", "40", "--out", str(data)])  # fmt: skip
    meta = json.loads((data / "meta.json").read_text())
    assert meta["train"]["random"]["transitions"] == 240
    out = tmp_path / "acc"
    res = accuracy.main(["--data", str(data), "--preset", "tiny", "--seeds", "0", "--steps", "3",
                         "--horizon", "4", "--segments", "6", "--denoiser-lr", "3e-4",
                         "--out", str(out)])  # fmt: skip
    saved = json.loads((out / "results.json").read_text())
    models = {"sequential", "cumulative", "joint", "ensemble"}
    assert set(saved["seeds"]["0"]) == models
    for kind in models:
        curve = saved["seeds"]["0"][kind]["cum_l1"]
        assert len(curve) == 4 and all(math.isfinite(v) for v in curve)
        assert curve == sorted(curve)  # cumulative
        # per-agent action effects against the real simulator, for every model
        effects = saved["seeds"]["0"][kind]["action_effects"]
        assert [e["agent"] for e in effects] == [0, 1]
        assert all(math.isfinite(e["ratio"]) and -1 <= e["cosine"] <= 1 for e in effects)
    for kind in ("sequential", "cumulative"):
        assert len(saved["seeds"]["0"][kind]["order_spread"]) == 4
    seq = saved["seeds"]["0"]["sequential"]["action_effects"]
    assert [e["first_step"] for e in seq] == [2, 0]  # descending: agent 1 first
    assert [e["first_step"] for e in saved["seeds"]["0"]["joint"]["action_effects"]] == [0, 0]
    assert "| cumulative |" in saved["table"] and res["segments"] == 6
    assert "ratio / cosine" in saved["table"]
    # the learning-rate options reach the optimisers without changing the module's defaults
    assert saved["optim"]["sequential"]["lr"] == saved["optim"]["joint"]["lr"] == 3e-4
    assert saved["optim"]["ensemble"]["lr"] == accuracy.OPTIM["ensemble"]["lr"] == 1e-3
    assert accuracy.OPTIM["cumulative"]["lr"] == 1e-4
