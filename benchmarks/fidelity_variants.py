"""Does a run's world model answer the actions? Its action effects, and those of fresh dynamics
models of other widths trained on the run's own replay buffer (learning-evidence issue).

For a finished (or interrupted) run's checkpoint this prints, per agent, the action-effect ratio
and cosine of :func:`dimalib.evaluation.action_effects` against the true MuJoCo step from the
same replay windows, on every state entry (as the run logs ``fidelity/*``), on the first
``--eval-dims`` entries only (Ant-2x4: the 27 positions and velocities, without the 78 contact
forces) and on the rest. Then it trains fresh dynamics models (the run's config with the
denoiser's widths replaced) on the same buffer with the run's own update rule
(:meth:`~dimalib.training.world_model_trainer.WorldModelTrainer.train_dynamics`) and reports the
same figures after each of ``--updates``.

    python benchmarks/fidelity_variants.py --run runs/ref/dima-Ant-2x4-0 --eval-dims 27 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch
from _common import machine, print_table

from dimalib.evaluation import action_effects
from dimalib.training.diagnostics import TrueDynamics, true_dynamics
from dimalib.training.trainer import Trainer
from dimalib.training.world_model_trainer import WorldModelTrainer
from dimalib.world_model import DIMAWorldModel
from dimalib.world_model.dynamics import DenoiserConfig

#: name -> changes to the run's DenoiserConfig
VARIANTS: dict[str, dict[str, object]] = {
    "run's widths": {},
    "64 ch, cond 256, tokens 128": {"channels": (64, 64), "cond_dim": 256, "action_token_dim": 128},
}
HUGE = 1e30  # a scale that removes an entry from the ratio and the cosine


def effects(
    model: DIMAWorldModel, win: dict[str, torch.Tensor], true: TrueDynamics, dims: int
) -> list[str]:
    """``ratio/cosine`` per agent on all entries, the first ``dims``, and the others."""
    std = model.state_std.to(win["states"].dtype)  # the dynamics model's running std
    huge = torch.full_like(std, HUGE)
    scales = (std, torch.cat([std[:dims], huge[dims:]]), torch.cat([huge[:dims], std[dims:]]))
    cells = []
    for scale in scales:
        eff = action_effects(
            model, win["states"], win["actions"], true, mask=win["mask"], scale=scale, seed=7
        )
        cells.append("  ".join(f"{e.ratio:.2f}/{e.cosine:.2f}" for e in eff))
    return cells


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a run folder holding checkpoint.pt")
    p.add_argument("--eval-dims", type=int, default=27)
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--updates", type=int, nargs="+", default=[1000, 2500, 5000])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    trainer = Trainer.resume(os.path.join(args.run, "checkpoint.pt"), tensorboard=False)
    try:
        buf, cfg, spec = trainer.buffer, trainer.config, trainer.world_model.spec
        true = true_dynamics(trainer.env_name)
        if true is None:
            p.error(f"--run: {trainer.env_name} has no true dynamics to compare with")
        win = buf.sample_dynamics(
            args.windows, context=cfg.world_model.dynamics.context,
            generator=torch.Generator().manual_seed(123),
        )  # fmt: skip
        d = args.eval_dims
        header = ("model", "updates", "all entries", f"first {d}", f"entries {d}+", "s")
        rows = [
            ("the run's own", f"{trainer.wm_epochs} epochs",
             *effects(trainer.world_model, win, true, d), "")
        ]  # fmt: skip
        states = torch.cat([buf.stream_data(i)["state"] for i in range(buf.num_streams)])
        for name in args.variants:
            dyn_cfg: DenoiserConfig = dataclasses.replace(
                cfg.world_model.dynamics,
                **VARIANTS[name],  # type: ignore[arg-type]
            )
            torch.manual_seed(0)
            wm = DIMAWorldModel(spec, dataclasses.replace(cfg.world_model, dynamics=dyn_cfg))
            wm.update_normalizer(states)
            wmt = WorldModelTrainer(wm, cfg.wm_training, generator=torch.Generator().manual_seed(1))
            size = sum(q.numel() for q in wm.dynamics.parameters())
            done, t0 = 0, time.perf_counter()
            for n in sorted(args.updates):
                wmt.train_dynamics(buf, n - done)
                done = n
                cells = effects(wm, win, true, d)
                rows.append((f"{name} ({size / 1e3:.0f}k)", str(n), *cells,
                             f"{time.perf_counter() - t0:.0f}"))  # fmt: skip
    finally:
        trainer.close()
    print_table(
        f"Action effects (ratio/cosine per agent) of {args.run} ({trainer.env_name}; "
        f"{machine()}; load {load})",
        rows,
        header,
    )


if __name__ == "__main__":
    main()
