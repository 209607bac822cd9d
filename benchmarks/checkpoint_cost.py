"""Cost of a trainer checkpoint: the whole replay buffer inline vs incremental block files.

    python benchmarks/checkpoint_cost.py runs/ref/dima-HalfCheetah-2x3-0/checkpoint.pt

Resumes the given checkpoint into a temporary folder (the original is only read), then times
(1) one file holding everything, as before format 2, (2) the first incremental save (every
block) and (3) incremental saves after 200 new transitions (one cpu-preset epoch). Prints a table
with the load average and thread count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dimalib.training.trainer import Trainer
from dimalib.utils.io import atomic_save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp())
    try:
        src = Path(args.checkpoint)
        shutil.copy(src, tmp / "input.pt")
        if src.with_name(src.name + ".buffer").is_dir():
            shutil.copytree(src.with_name(src.name + ".buffer"), tmp / "input.pt.buffer")
        with Trainer.resume(tmp / "input.pt", tensorboard=False) as trainer:
            buf = trainer.buffer
            inline, later = [], []
            for i in range(args.repeats):
                t = time.perf_counter()
                atomic_save(trainer.state_dict(), tmp / f"inline{i}.pt", kind="x", version=1)
                inline.append(time.perf_counter() - t)
            t = time.perf_counter()
            trainer.save_checkpoint(tmp / "incremental.pt")
            first = time.perf_counter() - t
            rows = buf.state_dict()["data"]
            per_stream = max(1, 200 // buf.num_streams)
            for _ in range(args.repeats):
                for j in range(per_stream):  # one epoch's worth of new transitions
                    buf.add(*(rows[k][:, j] for k in ("state", "obs", "action", "reward",
                              "terminated", "truncated", "next_state", "next_obs")))  # fmt: skip
                t = time.perf_counter()
                trainer.save_checkpoint(tmp / "incremental.pt")
                later.append(time.perf_counter() - t)
            mb = {
                "inline": (tmp / "inline0.pt").stat().st_size / 1e6,
                "main": (tmp / "incremental.pt").stat().st_size / 1e6,
            }
        print(f"load average {os.getloadavg()[0]:.2f}, {torch.get_num_threads()} thread(s), "
              f"{len(buf):,} transitions")  # fmt: skip
        print("| save | median s | MB written |")
        print("|---|---:|---:|")
        print(f"| whole buffer inline | {statistics.median(inline):.3f} | {mb['inline']:.1f} |")
        print(f"| first incremental (all blocks) | {first:.3f} | {mb['inline']:.1f} |")
        print(f"| incremental after {per_stream * buf.num_streams} new rows | "
              f"{statistics.median(later):.3f} | {mb['main']:.1f} + changed blocks |")  # fmt: skip
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
