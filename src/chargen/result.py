"""What training returns: the run, its steps and time, its best validation; in a notebook its
history, its loss curves and a short summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import plot


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    elapsed: float
    best_val: float
    best_step: int
    best_train: float = float("inf")  # the lowest epoch-mean training loss
    best_train_step: int = -1

    @property
    def best_bits(self) -> float:
        return self.best_val / np.log(2)

    @property
    def history(self) -> list[dict]:
        """The run's metrics as records (metrics.jsonl); history_frame() for a DataFrame."""
        return plot.history(self.run_dir)

    def history_frame(self):
        return plot.history_frame(self.run_dir)

    def plot(self):
        """The loss curves as a matplotlib figure (inline in a notebook)."""
        return plot.loss_figure([str(self.run_dir)])

    def _repr_html_(self) -> str:
        rows = [("steps", f"{self.steps:,}"), ("time", f"{self.elapsed:.0f} s")]
        if np.isfinite(self.best_val):
            rows.append(("best validation", f"{self.best_val:.4f} nats ({self.best_bits:.3f} "
                                            f"bits) at step {self.best_step:,}"))
        elif np.isfinite(self.best_train):  # no validation text (--val-fraction 0)
            rows.append(("best training loss", f"{self.best_train:.4f} nats (an epoch's "
                                               f"mean) at step {self.best_train_step:,}"))
        return plot.summary_html(f"chargen run {self.run_dir}", rows, self.run_dir)
