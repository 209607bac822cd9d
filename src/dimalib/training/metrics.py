"""Per-epoch metrics of a training run: ``LOG_DIR/metrics.csv`` and TensorBoard.

:class:`MetricsLogger` writes the rows :class:`~dimalib.training.Trainer` makes each epoch (one
column per metric, timings last), against the env-step counter; TensorBoard events go under
``LOG_DIR/tb`` only when ``torch.utils.tensorboard`` imports (the ``tensorboard`` package).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dimalib.utils.io import atomic_write_bytes

__all__ = ["MetricsLogger"]

logger = logging.getLogger(__name__)

_TIMING_PREFIXES = ("time/", "perf/")  # columns kept last, in the order they appear


def _format(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))  # round-trips exactly


def _tensorboard_writer(log_dir: Path, purge_step: int | None) -> Any:
    """A ``SummaryWriter`` if ``torch.utils.tensorboard`` imports, else ``None``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        logger.info("TensorBoard logging off (%s); metrics go to metrics.csv only", exc)
        return None
    return SummaryWriter(str(log_dir / "tb"), purge_step=purge_step)


class MetricsLogger:
    """Per-epoch metric rows to ``LOG_DIR/metrics.csv`` and, when available, TensorBoard.

    The CSV has one row per epoch and one column per metric; a metric that appears later (the
    world-model and policy metrics start after the warm-up) widens the header, and the file is
    then rewritten (atomically). Missing values are empty cells. Nothing is written before the
    first :meth:`log` call.

    Args:
        log_dir: the folder (created on the first write).
        tensorboard: also write TensorBoard events under ``LOG_DIR/tb`` if
            ``torch.utils.tensorboard`` imports.
        history: rows already logged (a resumed run): the CSV is rewritten with exactly these
            before the first new row, dropping rows a crashed run wrote after its last checkpoint.
        step_key: the row entry used as TensorBoard's global step.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        tensorboard: bool = True,
        history: Sequence[Mapping[str, float]] = (),
        step_key: str = "env_steps",
    ) -> None:
        self.log_dir = Path(log_dir)
        self.csv_path = self.log_dir / "metrics.csv"
        self.step_key = step_key
        self._tensorboard = tensorboard
        self._rows: list[dict[str, float]] = [dict(r) for r in history]
        self._columns: list[str] = []
        for row in self._rows:
            self._extend_columns(row)
        self._started = False
        self._writer: Any = None

    def _extend_columns(self, row: Mapping[str, float]) -> bool:
        """Add the row's new keys; timing columns (``time/*``, ``perf/*``) stay last."""
        new = [k for k in row if k not in self._columns]
        for key in new:
            if key.startswith(_TIMING_PREFIXES):
                self._columns.append(key)
            else:
                first_timing = next(
                    (i for i, c in enumerate(self._columns) if c.startswith(_TIMING_PREFIXES)),
                    len(self._columns),
                )
                self._columns.insert(first_timing, key)
        return bool(new)

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns, restval="")
        writer.writeheader()
        for row in self._rows:
            writer.writerow({k: _format(v) for k, v in row.items()})
        atomic_write_bytes(buf.getvalue().encode(), self.csv_path)

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._rewrite()
        if self._tensorboard:
            purge = int(self._rows[-1][self.step_key]) + 1 if self._rows else None
            self._writer = _tensorboard_writer(self.log_dir, purge)
        self._started = True

    def log(self, row: Mapping[str, float]) -> None:
        """Append one row (numbers; NaN is written as ``nan``)."""
        row = dict(row)
        if not self._started:
            self._rows.append(row)
            self._extend_columns(row)
            self._start()
        else:
            self._rows.append(row)
            if self._extend_columns(row):
                self._rewrite()
            else:
                with self.csv_path.open("a", newline="") as f:
                    csv.DictWriter(f, fieldnames=self._columns, restval="").writerow(
                        {k: _format(v) for k, v in row.items()}
                    )
        if self._writer is not None:
            step = int(row.get(self.step_key, len(self._rows)))
            for key, value in row.items():
                if key != self.step_key and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer (idempotent; the CSV is closed after every row)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
