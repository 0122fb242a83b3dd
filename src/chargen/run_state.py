"""The trainer's state around its loop: what a run's last checkpoint holds besides the weights,
so that training resumes exactly (the optimiser's state, the random generator, the streams'
carried state and the progression); the loss window between log points; the stop signals."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
from dataclasses import dataclass

import torch

from .checkpoint import (
    BEST,
    LAST,
    RunDir,
    checkpoint_info,
    checkpoint_limit,
    fit_weights,
    load_checkpoint,
    save_checkpoint,
)
from .config import RunConfig, parse_duration
from .config.checks import positive
from .distributed import World
from .errors import CheckpointError, ConfigError
from .model import RNNLanguageModel
from .progress import format_duration

log = logging.getLogger("chargen")


@dataclass
class Progression:
    """What resume restores besides weights and optimiser."""

    step: int = 0
    elapsed: float = 0.0
    best_val: float = math.inf
    best_step: int = -1
    lr_scale: float = 1.0
    rollbacks: int = 0
    # Keras-style epoch-mean training loss (and the train-loss checkpoint rule)
    best_train: float = math.inf
    best_train_step: int = -1
    epoch_loss_sum: float = 0.0
    epoch_loss_steps: int = 0
    epoch_started: float = 0.0
    # Training progress (a share of the budget) at the best validation loss, and where a
    # plateau brought the wsd decay forward (schedule.decay_starts); both for this budget.
    best_progress: float = 0.0
    decay_from: float | None = None
    budget: list | None = None


def restore_state(run: RunDir, config: RunConfig, model: RNNLanguageModel,
                  optimizer: torch.optim.Optimizer, world: World, device: torch.device,
                  average=None):
    """Load the last checkpoint into the model, optimiser and weight average (averaging.py);
    -> (this rank's carried stream state or None, the Progression)."""
    weights, tensors, info = load_checkpoint(run.file(LAST), checkpoint_limit(config, model.vocab_size))
    if "progression" not in info:
        raise CheckpointError(f"{run.file(LAST)} holds no trainer state; cannot resume")
    fit_weights(model, weights, run.path)
    state = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": info["optimizer_groups"]})
    torch.set_rng_state(tensors["rng"])
    if average is not None:
        average.restore({k: v.to(device) for k, v in tensors.items()})
    carried = [tensors[k] for k in sorted(tensors) if k.startswith("carried.")]
    return (_my_rows(carried, config.data.batch_size, world, device),
            Progression(**info["progression"]))


def restore_best(run: RunDir, config: RunConfig, model: RNNLanguageModel) -> bool:
    """Load the run's best weights by validation loss into the model; -> whether it has any."""
    path = run.file(BEST)
    if config.train.keep != "val-loss" or not path.exists():
        return False
    weights, _, _ = load_checkpoint(path, checkpoint_limit(config, model.vocab_size))
    fit_weights(model, weights, run.path)
    return True


def _my_rows(carried: list[torch.Tensor], batch: int, world: World, device: torch.device):
    """This rank's rows of the saved stream state (saved for the whole global batch); a state
    saved with another batch layout is dropped, and the streams start afresh."""
    if not carried:
        return None
    rows = carried[0].shape[1]
    if rows == batch * world.size:
        carried = [c[:, world.rows(batch)] for c in carried]
    elif rows != batch:
        log.warning("the saved stream state has %d rows, not %d: starting the streams with a "
                    "fresh state", rows, batch * world.size)
        return None
    carried = [c.to(device) for c in carried]
    return tuple(carried) if len(carried) > 1 else carried[0]


def save_state(run: RunDir, model: RNNLanguageModel, optimizer: torch.optim.Optimizer,
               progression: Progression, carried, average=None) -> None:
    """The last checkpoint: weights, optimiser, generator, carried state (all ranks' rows),
    the weight average if there is one."""
    opt = optimizer.state_dict()
    tensors = {"rng": torch.get_rng_state()}
    for index, entries in opt["state"].items():
        for name, value in entries.items():
            tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value)
    carried = carried if isinstance(carried, tuple) else (() if carried is None else (carried,))
    for i, value in enumerate(carried):
        tensors[f"carried.{i}"] = value
    if average is not None:
        tensors.update(average.tensors())
    info = {"progression": vars(progression),
            "optimizer_groups": json.loads(json.dumps(opt["param_groups"]))}
    save_checkpoint(run.file(LAST), model.state_dict(), tensors, info)


def time_budget(run: RunDir, config: RunConfig, max_time, more) -> dict[str, float]:
    """The max_time a resumed run trains to: its time so far plus `more`; a max_time the run
    has already used is refused (it counts from the run's start, and there is nothing left)."""
    trained = 0.0
    if run.file(LAST).exists():
        limit = checkpoint_limit(config, run.read_tokenizer().vocab_size)
        info = checkpoint_info(run.file(LAST), limit)
        trained = info.get("progression", {}).get("elapsed", 0.0)
    if more is not None:
        if max_time is not None:
            raise ConfigError("--more and --max-time both set the budget: give one (--more counts "
                              "from now, --max-time from the run's start)")
        seconds = parse_duration(more) if isinstance(more, str) else more
        positive("more", seconds)
        return {"max_time": trained + seconds}
    if max_time is not None and trained >= max_time:
        raise ConfigError(f"{run.path} has already trained {format_duration(trained)}, and "
                          f"--max-time {format_duration(max_time)} counts from the run's start: "
                          "nothing to train; to train N more minutes, pass --more Nm")
    return {}


def check_steps_left(run: RunDir, step: int, max_steps: int | None) -> None:
    if max_steps is not None and step >= max_steps:
        raise ConfigError(f"{run.path} is already at step {step:,}, and --max-steps {max_steps:,} "
                          f"counts from the run's start: nothing to train; pass a --max-steps "
                          f"above {step:,}")


class LossWindow:
    """Training loss summed on the device between log points (no host sync per step), and
    the input positions run (a document batch is as wide as its longest row, not seq_len)."""

    def __init__(self, now: float):
        self.time, self.total, self.count, self.positions = now, None, 0, 0

    def add(self, loss: torch.Tensor, positions: int) -> None:
        self.total = loss if self.total is None else self.total + loss
        self.count += 1
        self.positions += positions

    def flush(self, now: float) -> tuple[float, float]:
        loss = float(self.total) / max(self.count, 1) if self.total is not None else math.nan
        rate = self.positions / max(now - self.time, 1e-9)
        self.time, self.total, self.count, self.positions = now, None, 0, 0
        return loss, rate


class StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step (the trainer's _stop_signal
    is set; the step's checkpoint is saved); a second SIGINT exits at once."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.previous = {}

    def _handle(self, signum, frame):
        if self.trainer._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.trainer._stop_signal = signum
        print(f"\n{signal.Signals(signum).name} received: finishing this step and saving "
              "(press Ctrl-C again to quit at once)", file=sys.stderr)

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = {}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False
