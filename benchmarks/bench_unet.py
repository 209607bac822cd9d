"""The denoiser's U-Net against its plain reference (``F.conv1d``, one linear layer per norm).

Both compute the same function from the same parameters
(:func:`dimalib.testing.reference_unet.reference_unet_forward`); they are timed interleaved in
one process (reference, ours, reference, ours, ...; medians), at the cpu preset's sizes and at
Table 3's, for sampling (``torch.inference_mode``, inside ``UNet1D.frozen`` as the sampler runs
it) and for a training step's forward and backward. A second table times one convolution
(``SeqConv1d`` against ``F.conv1d``) over sequence lengths, the evidence for ``DENSE_MAX_LEN``.

    python benchmarks/bench_unet.py --threads 1
    python benchmarks/bench_unet.py --device cuda   # F.conv1d (cuDNN) in both; fused projections
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import machine, print_table, sync

from dimalib.testing.reference_unet import reference_unet_forward
from dimalib.world_model.dynamics.unet1d import SeqConv1d, UNet1D

SIZES = {  # name: (depths, channels, cond_dim, sampling batch); state of HalfCheetah-2x3 (17)
    "cpu preset": ((1, 1), (32, 32), 64, 200),
    "paper (Table 3)": ((2, 2, 2), (64, 64, 64), 256, 600),
}


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int, calls: int, device: torch.device
) -> dict[str, float]:
    """Median ms per call of each function, alternating them ``rounds`` times."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            sync(device)
            times[k].append((time.perf_counter() - t0) / calls * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def unet_rows(
    name: str, state_dim: int, rounds: int, device: torch.device
) -> list[tuple[str, ...]]:
    depths, channels, cond_dim, batch = SIZES[name]
    S = state_dim
    unet = UNet1D(S + 1, S, cond_dim, depths, channels).to(device)
    with torch.no_grad():
        for param in unet.parameters():  # non-zero everywhere (the init zeroes some)
            param.normal_(0, 0.1)
    x = torch.randn(batch, S + 1, 4, device=device)  # (B, S+1, L+1)
    cond = torch.randn(batch, cond_dim, device=device)
    xt, ct = torch.randn(64, S + 1, 4, device=device), torch.randn(64, cond_dim, device=device)

    def sample_ref() -> object:
        with torch.inference_mode():
            return reference_unet_forward(unet, x, cond)

    def sample_ours() -> object:
        with torch.inference_mode(), unet.frozen():
            return unet(x, cond)

    def train_ref() -> None:
        reference_unet_forward(unet, xt, ct).square().mean().backward()

    def train_ours() -> None:
        unet(xt, ct).square().mean().backward()

    inf = interleaved({"ref": sample_ref, "ours": sample_ours}, rounds, 10, device)
    trn = interleaved({"ref": train_ref, "ours": train_ours}, rounds, 5, device)
    return [
        (name, what, f"{m['ref']:.2f}", f"{m['ours']:.2f}", f"{m['ref'] / m['ours']:.2f}x")
        for what, m in ((f"forward, batch {batch}", inf), ("forward + backward, batch 64", trn))
    ]


def conv_row(length: int, rounds: int, device: torch.device) -> tuple[str, ...]:
    conv = SeqConv1d(32, 32, 3, padding=1).to(device)
    x = torch.randn(200, 32, length, device=device)

    def plain() -> object:
        with torch.inference_mode():
            return F.conv1d(x, conv.weight, conv.bias, padding=1)

    def banded() -> object:
        with torch.inference_mode():
            return conv._dense_forward(x)

    m = interleaved({"conv1d": plain, "banded": banded}, rounds, 50, device)
    us = {k: v * 1e3 for k, v in m.items()}
    return (
        str(length),
        f"{us['conv1d']:.0f}",
        f"{us['banded']:.0f}",
        f"{m['conv1d'] / m['banded']:.2f}x",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--state-dim", type=int, default=17)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    torch.manual_seed(0)
    rows = [row for name in SIZES for row in unet_rows(name, args.state_dim, args.rounds, device)]
    print_table(
        f"U-Net, reference vs dimalib ({machine()}; load {load})",
        rows,
        ("sizes", "pass", "reference ms", "dimalib ms", "speed-up"),
    )
    print_table(
        "One 3-tap convolution, batch 200, 32 channels: F.conv1d vs the banded matrix product",
        [conv_row(length, args.rounds, device) for length in (2, 4, 8)],
        ("steps", "F.conv1d µs", "banded µs", "speed-up"),
    )


if __name__ == "__main__":
    main()
