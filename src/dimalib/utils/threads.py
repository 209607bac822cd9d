"""How many torch CPU threads a run should use on a machine that may be shared.

Measured on the 2-core development machine (issue "speed"): next to one busy process, 2 torch
threads run 2.6–2.9× slower than on a quiet machine while 1 thread is unaffected, because every
parallel region waits for its slowest thread. :func:`auto_threads` therefore counts only the
cores the 1-minute load average leaves free. A run is reproducible bit for bit only at a fixed
thread count (kernels may sum in another order with another count): pass the count explicitly
when that matters; the command-line tools record the count they used.
"""

from __future__ import annotations

import os

__all__ = ["auto_threads", "available_cores"]


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def auto_threads(load: float | None = None, cores: int | None = None) -> int:
    """Threads for a CPU run: the cores left free by other work, at least 1.

    Args:
        load: the number of busy cores (default: the 1-minute load average, ``os.getloadavg``;
            0 where the platform has none).
        cores: the usable cores (default: :func:`available_cores`).

    Examples:
        >>> auto_threads(load=0.0, cores=2), auto_threads(load=1.1, cores=2), auto_threads(5.0, 2)
        (2, 1, 1)
        >>> auto_threads(load=3.4, cores=16)
        13
    """
    cores = available_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))
