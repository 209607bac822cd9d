"""ReplayBuffer sampling speed at the paper's batch sizes (Table 4), HalfCheetah-2x3 sizes.

    python benchmarks/bench_buffer.py [--rows 100000] [--streams 1] [--device cpu]

Fills a buffer with ``--rows`` transitions (episodes of 1000 steps, as in MAMuJoCo, written with
``extend`` per stream), then times each sampler: ``--warmup`` calls, then the median and 90th
percentile of ``--repeats`` calls. Also times ``add`` (one step of every stream). Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from dimalib.data.buffer import ReplayBuffer
from dimalib.spec import MultiAgentSpec

# HalfCheetah 2x3: 17-d state, two agents with 3 joints each
HALFCHEETAH_2X3 = MultiAgentSpec(
    ("agent_0", "agent_1"), obs_dims=(13, 13), action_dims=(3, 3), state_dim=17
)


def fill(buf: ReplayBuffer, rows: int, episode_len: int, gen: torch.Generator) -> None:
    spec = buf.spec
    per_stream = rows // buf.num_streams
    for stream in range(buf.num_streams):
        left = per_stream
        while left > 0:
            t = min(episode_len, left)
            term = torch.zeros(t, dtype=torch.bool)
            trunc = torch.zeros(t, dtype=torch.bool)
            trunc[-1] = t == episode_len
            buf.extend(
                torch.randn(t, spec.state_dim, generator=gen),
                torch.randn(t, spec.joint_obs_dim, generator=gen),
                torch.rand(t, spec.joint_action_dim, generator=gen) * 2 - 1,
                torch.randn(t, generator=gen),
                term,
                trunc,
                torch.randn(t, spec.state_dim, generator=gen),
                torch.randn(t, spec.joint_obs_dim, generator=gen),
                stream=stream,
            )
            left -= t


def timed(fn: Callable[[], object], warmup: int, repeats: int, device: torch.device) -> list[float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--capacity", type=int, default=250_000)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(HALFCHEETAH_2X3, args.capacity, num_streams=args.streams, device=device)
    t0 = time.perf_counter()
    fill(buf, args.rows, 1000, gen)
    fill_s = time.perf_counter() - t0
    sample_gen = torch.Generator(device=device).manual_seed(1)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("sample_state_obs(256)", lambda: buf.sample_state_obs(256, generator=sample_gen)),
        ("sample_dynamics(64, context=3)", lambda: buf.sample_dynamics(64, 3, sample_gen)),
        ("sample_sequences(128, length=15)", lambda: buf.sample_sequences(128, 15, sample_gen)),
        (
            "sample_start_contexts(600, context=3)",
            lambda: buf.sample_start_contexts(600, 3, sample_gen),
        ),
    ]
    n, s, o, a = (
        args.streams,
        buf.spec.state_dim,
        buf.spec.joint_obs_dim,
        buf.spec.joint_action_dim,
    )
    step = (
        torch.randn(n, s),
        torch.randn(n, o),
        torch.rand(n, a),
        torch.randn(n),
        torch.zeros(n, dtype=torch.bool),
        torch.zeros(n, dtype=torch.bool),
        torch.randn(n, s),
        torch.randn(n, o),
    )
    cases.append((f"add (one step of {n} stream(s))", lambda: buf.add(*step)))

    def first_after_write() -> object:
        buf.end_episodes([])  # a no-op write: drops the cached index of final rows
        return buf.sample_state_obs(256, generator=sample_gen)

    cases.append(("sample_state_obs(256), first call after a write", first_after_write))

    print(
        f"ReplayBuffer: {len(buf)} transitions, capacity {buf.capacity}, {args.streams} stream(s), "
        f"S={s} O={o} A={a}, device {device}, torch threads {torch.get_num_threads()}, "
        f"{buf.nbytes / 2**20:.1f} MiB storage; fill by extend: {fill_s:.2f} s"
    )
    print(f"warm-up {args.warmup}, {args.repeats} timed calls each\n")
    print("| operation | median ms | p90 ms |")
    print("|---|---:|---:|")
    for name, fn in cases:
        ms = sorted(timed(fn, args.warmup, args.repeats, device))
        p90 = ms[int(0.9 * (len(ms) - 1))]
        print(f"| {name} | {statistics.median(ms):.3f} | {p90:.3f} |")


if __name__ == "__main__":
    main()
