"""The settings of adapting a model's weights to a text as it reads it: dynamic evaluation
(`chargen eval --dynamic`) and adapting to a document before sampling (`chargen sample
--adapt`)."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import check_types, positive, within
from .fields import setting

# The best of a grid (lr 0.1-3, decay 0-0.03, segment 25-100) on the first half of tiny
# Shakespeare's validation text, for a 10-minute 2x256 run (benchmarks/RESULTS.md, "Dynamic
# evaluation"); lr 3 diverges at short segments, decay 0.03 gives back a third of the gain.
ADAPT_LR, ADAPT_DECAY, ADAPT_SEGMENT = 0.3, 0.001, 25


@dataclass(frozen=True)
class AdaptConfig:
    adapt_lr: float = setting(ADAPT_LR, metavar="LR", help=(
        f"step size of each update on the segment just read ({ADAPT_LR:g})"))
    adapt_decay: float = setting(ADAPT_DECAY, metavar="D", help=(
        f"share of the way back to the trained weights after each update ({ADAPT_DECAY:g})"))
    adapt_segment: int = setting(ADAPT_SEGMENT, metavar="N", help=(
        f"tokens read between two updates ({ADAPT_SEGMENT})"))

    def validate(self) -> AdaptConfig:
        check_types(self)
        within("adapt_lr", self.adapt_lr, 0.0, 10.0, hint="0 scores without adapting")
        within("adapt_decay", self.adapt_decay, 0.0, 1.0,
               hint="0 keeps every update, 1 undoes each at once")
        positive("adapt_segment", self.adapt_segment, limit=100_000)
        return self
