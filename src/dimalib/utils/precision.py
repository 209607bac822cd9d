"""Whether bfloat16 matrix products are native on a device (a speed fact, not a correctness one).

bfloat16 autocast (:attr:`~dimalib.world_model.reward_termination.RewardTerminationConfig.
autocast_bf16`) pays off only where the hardware multiplies bfloat16 matrices: CUDA GPUs, and CPUs
with ``avx512_bf16`` or AMX. Elsewhere PyTorch emulates it. Measured on a 2-core AMD EPYC exposing
only AVX2 (2026-12-01, 1 thread, 512×512 products): 1.2 GFLOP/s in bfloat16 against 54 in float32
(and on the Zen 5 machine with ``avx512_bf16``: 900–1030 against 216–239 at 2 threads).
"""

from __future__ import annotations

import torch

__all__ = ["native_bf16"]


def native_bf16(device: torch.device | str) -> bool:
    """True where bfloat16 matrix products run in hardware on ``device``.

    CPU: ``avx512_bf16`` or AMX tiles (as PyTorch detects them); CUDA: compute capability 8.0 or
    newer (bf16 tensor cores); other device types: assumed native.

    Examples:
        >>> isinstance(native_bf16("cpu"), bool)
        True
    """
    device = torch.device(device)
    if device.type == "cpu":
        cpu = torch.cpu
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in probes)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return True
