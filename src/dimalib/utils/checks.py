"""Input validation at the library's boundaries.

Every public entry point that receives user data calls these helpers, so that bad input fails
early with a message that names the argument, what was expected and what was received, before
any state changes.

**Dtype policy.** Floating inputs of any precision are accepted and converted to the dtype of the
component that receives them (``cast=``; float32 unless the module was cast itself), so float64
arrays from numpy or MuJoCo work everywhere; non-floating inputs where floats are expected are
refused. Tensors on another device than the component's are refused (``device=``): dimalib
never moves data between devices behind the caller's back.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "NonFiniteTrainingError",
    "check_device",
    "check_finite",
    "check_keys",
    "check_tensor",
]


class NonFiniteTrainingError(RuntimeError):
    """Every update of a training phase had a non-finite loss or gradient: training cannot
    make progress (the parameters were left as they were before the phase's updates)."""


def _fmt_shape(shape: Sequence[int | str | None]) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"


def check_tensor(
    name: str,
    x: object,
    shape: Sequence[int | None] | None = None,
    *,
    last_dim: int | None = None,
    floating: bool = False,
    dtype: torch.dtype | None = None,
    finite: bool = False,
    cast: torch.dtype | None = None,
    device: torch.device | None = None,
    nonempty: bool = False,
) -> torch.Tensor:
    """Check that ``x`` is a tensor of the given shape and dtype; return it (converted to ``cast``
    when given).

    Args:
        name: the argument's name, used in the error message.
        x: the value to check.
        shape: expected shape; ``None`` entries match any size. ``None`` skips the check.
        last_dim: expected size of the last dimension, any leading shape (``[..., D]``).
        floating: require a floating point dtype.
        dtype: require exactly this dtype.
        finite: require every element to be finite (no NaN/inf). This costs a device sync.
        cast: convert a floating tensor to this dtype (the dtype policy above); implies
            ``floating``.
        device: require the tensor to live on this device.
        nonempty: require at least one entry along the first (batch) dimension.

    Raises:
        ValueError: naming ``name``, the expectation and what was received.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, received {type(x).__name__}")
    if shape is not None:
        ok = x.dim() == len(shape) and all(
            e is None or e == r for e, r in zip(shape, x.shape, strict=True)
        )
        if not ok:
            raise ValueError(
                f"{name}: expected shape {_fmt_shape(shape)}, received {_fmt_shape(tuple(x.shape))}"
            )
    if nonempty and (x.dim() == 0 or x.shape[0] == 0):
        raise ValueError(
            f"{name}: expected a non-empty batch, received shape {_fmt_shape(tuple(x.shape))}"
        )
    if last_dim is not None and (x.dim() < 1 or x.shape[-1] != last_dim):
        raise ValueError(
            f"{name}: expected last dimension {last_dim}, received shape {tuple(x.shape)}"
        )
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {dtype}, received {x.dtype}")
    if (floating or cast is not None) and not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating point tensor, received dtype {x.dtype}")
    if device is not None and not _on(x.device, torch.device(device)):
        raise ValueError(
            f"{name}: expected a tensor on {torch.device(device)}, received one on {x.device}"
        )
    if cast is not None and x.dtype != cast:
        x = x.to(cast)  # before the finiteness check: 1e39 in float64 is inf in float32
    if finite:
        check_finite(name, x)
    return x


def _on(actual: torch.device, expected: torch.device) -> bool:
    """``actual`` is ``expected``; an index-less ``expected`` (``"cuda"``) matches any index."""
    return actual.type == expected.type and (
        expected.index is None or actual.index == expected.index
    )


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or inf; return ``x`` unchanged."""
    if x.device.type == "meta":
        raise ValueError(f"{name}: expected a tensor with data, received one on the meta device")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(
            f"{name}: expected finite values, received {n_nan} NaN and {n_inf} inf "
            f"in a tensor of shape {tuple(x.shape)}"
        )
    return x


def check_keys(name: str, mapping: Mapping[str, object], keys: Sequence[str]) -> None:
    """Raise ``ValueError`` naming ``name`` when ``mapping`` lacks any of ``keys``."""
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ValueError(f"{name}: missing key(s) {missing}; received keys {sorted(mapping)}")


def check_device(name: str, device: object) -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine.

    Accepts a ``torch.device`` or a string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Raises:
        ValueError: naming ``name``: not a device string, or a CUDA/MPS device that this machine
            (or this PyTorch build) does not have.
    """
    if not isinstance(device, (str, torch.device)):
        raise ValueError(
            f"{name}: expected a torch device such as 'cpu' or 'cuda:0', received "
            f"{type(device).__name__} {device!r}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"{name}: expected a torch device such as 'cpu', 'cuda', 'cuda:1' or 'mps', "
            f"received {device!r}"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"{name}: expected an available device, received {device!r} but this PyTorch "
                f"build sees no CUDA device (torch {torch.__version__}); use 'cpu'"
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"{name}: expected a CUDA index below {count} (the visible devices), received "
                f"{device!r}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}: expected an available device, received {device!r} (no MPS)")
    return dev


def as_float64_array(x: Any, name: str) -> npt.NDArray[np.float64]:
    """``np.ndarray`` / torch tensor / sequence → a finite float64 array, else ``ValueError``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise ValueError(f"{name}: expected a numeric array, received {type(x).__name__}") from exc
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected a real numeric array, received dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"{name}: contains NaN or inf (first at index {bad})")
    return arr


def check_last_dim(arr: npt.NDArray[Any], size: int, name: str, what: str) -> None:
    """``ValueError`` unless ``arr`` has shape ``[..., size]`` (``what`` says what it is)."""
    if arr.ndim == 0 or arr.shape[-1] != size:
        raise ValueError(f"{name}: expected shape [..., {size}] ({what}), received {arr.shape}")


def check_int(name: str, value: object, *, minimum: int = 1, what: str | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (``numpy.int64`` too, not ``bool``) that is
    ``>= minimum``; else ``ValueError`` naming ``name``, what was expected and what was received.

    ``what`` overrides the expected-value phrase (default: "a positive integer" for
    ``minimum=1``, "a non-negative integer" for 0, else "an integer >= minimum").
    """
    try:
        number = None if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or number < minimum:
        if what is None:
            what = {1: "a positive integer", 0: "a non-negative integer"}.get(
                minimum, f"an integer >= {minimum}"
            )
        raise ValueError(f"{name}: expected {what}, received {value!r}")
    return int(number)
