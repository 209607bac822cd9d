"""Speed of the reward/termination transformer and the FSQ state decoder (HalfCheetah-2x3 sizes).

Cases (paper configurations, Tables 3-4):

* ``gpt train``: one AdamW training step (zero_grad, forward, loss, backward, step) at batch 128 x
  15 steps (30 tokens);
* ``imagination``: 15 KV-cached ``step`` calls at batch 600 under ``torch.inference_mode()``, reusing
  one preallocated cache (``cache.reset()``); the ``+init`` case also allocates the cache;
* ``decoder train``: one AdamW step of the FSQ state decoder at batch 256;
* ``gemm``: one ``[3840, 256] x [256, 1024]`` matmul, to show the machine's ceiling.

Cases are run round-robin (one repeat of every case, then the next repeat) so that load from other
processes on a shared machine spreads over all of them; the table gives the median, the
interquartile range and the minimum. ``GF/s`` is the matmul work (2 * multiply-adds of the
linear layers) divided by the median time.

Usage::

    python benchmarks/bench_reward_decoder.py [--repeats 15] [--warmup 3] [--threads N]
        [--no-bf16] [--compile] [--compare-dropout] [--no-malloc-tuning]

``--compare-dropout`` adds the train cases with ``F.dropout`` masks and SDPA's math-path attention
(``dimalib.utils.dropout.set_fast_mask(model, False)``, the code before 2026-12-03), run
round-robin with the default ones: the ratio of the two medians is an interleaved comparison.

Allocator note: on some virtual machines touching freshly mapped memory is slow (page faults are
served by the host), and glibc returns large freed blocks to the OS, so every activation
allocation faults again. Unless ``--no-malloc-tuning`` is given the script re-executes itself with
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``/``MALLOC_TOP_PAD_`` set so that freed memory
stays in the heap. The same variables can be exported for training runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from dimalib.spec import MultiAgentSpec
from dimalib.utils.dropout import set_fast_mask
from dimalib.world_model import (
    FSQStateDecoder,
    RewardTerminationConfig,
    RewardTerminationGPT,
    StateDecoderConfig,
)

logger = logging.getLogger("bench_reward_decoder")

MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),  # glibc's maximum: blocks <= 32 MiB from the heap
    "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30),  # never give the heap top back to the OS
    "MALLOC_TOP_PAD_": str(256 * 2**20),
}

# HalfCheetah-2x3: global state 17, two agents with 3 action entries each, 17 observations each
SPEC = MultiAgentSpec(("agent_0", "agent_1"), obs_dims=(17, 17), action_dims=(3, 3), state_dim=17)
TRAIN_BATCH, TRAIN_STEPS = 128, 15  # Table 4: batch 128; 2H = 30 tokens
IMAG_BATCH, IMAG_STEPS = 600, 15  # Table 4: 600 imagined rollouts, horizon 15
DECODER_BATCH = 256  # Table 4


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpt_macs(config: RewardTerminationConfig, batch: int, steps: int) -> float:
    """Multiply-adds of the linear layers of one forward pass over ``steps`` (state, action) pairs.

    The last block computes queries, output projection and MLP for the action tokens only.
    """
    c, n_layer = config.n_embd, config.n_layer
    tokens = batch * 2 * steps
    per_token_layer = (3 + 1 + 2 * config.mlp_ratio) * c * c
    last_state_saved = (1 + 1 + 2 * config.mlp_ratio) * c * c * batch * steps
    trunk = tokens * n_layer * per_token_layer - last_state_saved
    heads = batch * steps * 2 * (c * config.head_hidden + config.head_hidden**2)
    embed = batch * steps * (SPEC.state_dim * c + c * c + SPEC.max_action_dim * c + c * c)
    return float(trunk + heads + embed)


def decoder_macs(config: StateDecoderConfig, batch: int) -> float:
    h, latent = config.hidden_dim, config.num_tokens * config.token_dim
    enc = SPEC.state_dim * h + (config.num_layers - 2) * h * h + h * latent
    dec = latent * h + (config.num_layers - 2) * h * h + h * SPEC.joint_obs_dim
    return float(batch * (enc + dec))


def make_gpt_train(
    config: RewardTerminationConfig, compile_model: bool, fast_mask: bool = True
) -> Callable[[], None]:
    torch.manual_seed(0)
    model = RewardTerminationGPT(SPEC, config).train()
    set_fast_mask(model, fast_mask)  # False: F.dropout and SDPA's math path (before 2026-12-03)
    opt = torch.optim.AdamW(model.optimizer_groups(0.01), lr=1e-4)  # Table 4
    g = torch.Generator().manual_seed(0)
    states = torch.randn(TRAIN_BATCH, TRAIN_STEPS, SPEC.state_dim, generator=g)
    actions = torch.rand(TRAIN_BATCH, TRAIN_STEPS, SPEC.joint_action_dim, generator=g) * 2 - 1
    rewards = torch.randn(TRAIN_BATCH, TRAIN_STEPS, generator=g)
    terms = torch.rand(TRAIN_BATCH, TRAIN_STEPS, generator=g) < 0.05
    loss_fn = model.loss
    if compile_model:
        loss_fn = torch.compile(model.loss)  # type: ignore[assignment]

    def run() -> None:
        loss, _ = loss_fn(states, actions, rewards, terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def make_imagination(
    config: RewardTerminationConfig, *, reuse_cache: bool, outer_autocast: bool
) -> tuple[Callable[[], None], RewardTerminationGPT]:
    torch.manual_seed(0)
    model = RewardTerminationGPT(SPEC, config).eval()
    g = torch.Generator().manual_seed(1)
    states = torch.randn(IMAG_BATCH, IMAG_STEPS, SPEC.state_dim, generator=g)
    actions = torch.rand(IMAG_BATCH, IMAG_STEPS, SPEC.joint_action_dim, generator=g) * 2 - 1
    with torch.inference_mode():
        cache = model.init_cache(IMAG_BATCH)

    def run() -> None:
        nonlocal cache
        with torch.inference_mode():
            if reuse_cache:
                cache.reset()
            else:
                cache = model.init_cache(IMAG_BATCH)
            ctx = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if outer_autocast
                else torch.autocast("cpu", enabled=False)
            )
            with ctx:
                for t in range(IMAG_STEPS):
                    model.step(cache, states[:, t], actions[:, t])

    return run, model


def make_decoder_train(config: StateDecoderConfig) -> Callable[[], None]:
    torch.manual_seed(0)
    model = FSQStateDecoder(SPEC, config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)  # Table 4
    g = torch.Generator().manual_seed(0)
    states = torch.randn(DECODER_BATCH, SPEC.state_dim, generator=g)
    obs = torch.tanh(torch.randn(DECODER_BATCH, SPEC.joint_obs_dim, generator=g))

    def run() -> None:
        loss, _ = model.loss(states, obs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def make_gemm(dtype: torch.dtype) -> Callable[[], None]:
    a = torch.randn(3840, 256).to(dtype)
    w = torch.randn(1024, 256).to(dtype)

    def run() -> None:
        torch.nn.functional.linear(a, w)

    return run


def bf16_accuracy(config: RewardTerminationConfig) -> tuple[float, float]:
    """Max |bf16 - float32| of imagined rewards and termination probabilities, same weights.

    Weights are the default init plus N(0, 0.05) noise so the outputs are not trivially ~0.
    Returned relative to the float32 outputs' standard deviation.
    """
    torch.manual_seed(0)
    m32 = RewardTerminationGPT(SPEC, config).eval()
    with torch.no_grad():
        for p in m32.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m16 = RewardTerminationGPT(SPEC, replace(config, autocast_bf16=True)).eval()
    m16.load_state_dict(m32.state_dict())
    g = torch.Generator().manual_seed(2)
    states = torch.randn(IMAG_BATCH, IMAG_STEPS, SPEC.state_dim, generator=g)
    actions = torch.rand(IMAG_BATCH, IMAG_STEPS, SPEC.joint_action_dim, generator=g) * 2 - 1
    out = []
    with torch.inference_mode():
        for m in (m32, m16):
            cache = m.init_cache(IMAG_BATCH)
            r, p = zip(
                *(m.step(cache, states[:, t], actions[:, t]) for t in range(15)), strict=True
            )
            out.append((torch.stack(r, 1), torch.stack(p, 1)))
    (r32, p32), (r16, p16) = out
    return (
        float((r16 - r32).abs().max() / r32.std()),
        float((p16 - p32).abs().max() / p32.std()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 cases")
    parser.add_argument("--compile", action="store_true", help="add torch.compile train cases")
    parser.add_argument(
        "--compare-dropout", action="store_true", help="add train cases with F.dropout masks"
    )
    parser.add_argument("--no-malloc-tuning", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if not args.no_malloc_tuning and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    paper = RewardTerminationConfig()
    bf16 = replace(paper, autocast_bf16=True)
    dec_cfg = StateDecoderConfig()
    train_gf = 3 * 2 * gpt_macs(paper, TRAIN_BATCH, TRAIN_STEPS) / 1e9
    imag_gf = 2 * gpt_macs(paper, IMAG_BATCH, IMAG_STEPS) / 1e9
    dec_gf = 3 * 2 * decoder_macs(dec_cfg, DECODER_BATCH) / 1e9
    gemm_gf = 2 * 3840 * 256 * 1024 / 1e9

    cases: dict[str, tuple[Callable[[], None], float]] = {
        "gemm float32": (make_gemm(torch.float32), gemm_gf),
        "gpt train float32": (make_gpt_train(paper, False), train_gf),
        "imagination float32": (
            make_imagination(paper, reuse_cache=True, outer_autocast=False)[0],
            imag_gf,
        ),
        "imagination float32 +init": (
            make_imagination(paper, reuse_cache=False, outer_autocast=False)[0],
            imag_gf,
        ),
        "decoder train float32": (make_decoder_train(dec_cfg), dec_gf),
    }
    if args.compare_dropout:
        cases["gpt train float32 F.dropout"] = (make_gpt_train(paper, False, False), train_gf)
    if not args.no_bf16:
        cases["gemm bfloat16"] = (make_gemm(torch.bfloat16), gemm_gf)
        cases["gpt train autocast_bf16"] = (make_gpt_train(bf16, False), train_gf)
        if args.compare_dropout:
            cases["gpt train autocast_bf16 F.dropout"] = (
                make_gpt_train(bf16, False, False),
                train_gf,
            )
        cases["imagination autocast_bf16"] = (
            make_imagination(bf16, reuse_cache=True, outer_autocast=False)[0],
            imag_gf,
        )
        cases["imagination autocast_bf16 +outer"] = (
            make_imagination(bf16, reuse_cache=True, outer_autocast=True)[0],
            imag_gf,
        )
    if args.compile:
        t0 = time.perf_counter()
        run = make_gpt_train(paper, True)
        run()
        logger.info("torch.compile float32 train: first call %.1f s", time.perf_counter() - t0)
        cases["gpt train float32 compiled"] = (run, train_gf)
        if not args.no_bf16:
            t0 = time.perf_counter()
            run = make_gpt_train(bf16, True)
            run()
            logger.info("torch.compile bf16 train: first call %.1f s", time.perf_counter() - t0)
            cases["gpt train autocast_bf16 compiled"] = (run, train_gf)

    for _ in range(args.warmup):
        for fn, _ in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, (fn, _) in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    load_after = os.getloadavg()[0]

    flags = cpu_flags()
    print(f"CPU: {cpu_model_name()}; {os.cpu_count()} logical CPUs; torch {torch.__version__}")
    print(
        f"threads {torch.get_num_threads()} "
        f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}); "
        f"avx512_bf16={'avx512_bf16' in flags} "
        f"amx_bf16={'amx_bf16' in flags}; malloc tuning {not args.no_malloc_tuning}; "
        f"load average {load_before:.1f} -> {load_after:.1f}; "
        f"{args.repeats} repeats after {args.warmup} warm-up"
    )
    print()
    print(f"| {'case':<36} | {'median ms':>9} | {'IQR ms':>15} | {'min ms':>8} | {'GF/s':>5} |")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 17}|{'-' * 10}|{'-' * 7}|")
    for name, (_, gflop) in cases.items():
        ts = sorted(1e3 * t for t in times[name])
        med = statistics.median(ts)
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0], ts[0], ts[0]]
        iqr = f"{q[0]:.1f}-{q[2]:.1f}"
        print(
            f"| {name:<36} | {med:>9.1f} | {iqr:>13} | {ts[0]:>8.1f} | {gflop / med * 1e3:>5.0f} |"
        )
    if not args.no_bf16:
        dr, dp = bf16_accuracy(paper)
        print()
        print(
            "autocast_bf16 vs float32, 15-step imagination, batch 600 (perturbed random weights): "
            f"max |Δreward| = {dr:.3f} std, max |Δtermination prob| = {dp:.3f} std"
        )


if __name__ == "__main__":
    main()
