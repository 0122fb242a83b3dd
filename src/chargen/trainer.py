"""The training loop: optimiser, schedule, clipping, evaluation, checkpoints, resume, signals."""

from __future__ import annotations

import logging
import math
import signal
import time

import numpy as np
import torch
from torch.nn import functional as F

from .averaging import WeightAverage
from .batches import make_batches
from .checkpoint import BEST, LAST, RunDir, save_checkpoint
from .config import RunConfig
from .distributed import SINGLE, World, gather_rows, max_over_ranks, same_everywhere, sum_all
from .errors import ChargenError
from .evaluate import evaluate_ids
from .model import RNNLanguageModel, detach_state
from .progress import Progress, loss_unit
from .run_state import LossWindow, Progression, StopSignals, restore_best, restore_state, save_state
from .runtime import autocast, to_device
from .schedule import DECAY_SHARE, decay_starts, lr_factor, make_optimizer
from .threads import ThreadGovernor
from .watch import Watch

log = logging.getLogger("chargen")
MAX_ROLLBACKS = 3
_RUNNING, _DONE, _SIGNALLED = 0, 1, 2


class TrainingInterrupted(ChargenError):
    """SIGINT/SIGTERM: the last checkpoint was saved; exit_code follows the signal."""


class TrainingDiverged(ChargenError):
    pass


# Progress at least this often, whatever log_every (slow steps: a large model, a busy machine).
LOG_SECONDS = 5.0
# With a time budget, evaluate at least this often (a share of the budget), whatever eval_every.
EVAL_SHARE = 0.1


class Trainer:
    def __init__(self, model: RNNLanguageModel, config: RunConfig, train_ids: np.ndarray,
                 val_ids: np.ndarray, run: RunDir, device: torch.device,
                 dtype: torch.dtype | None, quiet: bool = False, world: World = SINGLE,
                 governor: ThreadGovernor | None = None, spent: float = 0.0):
        self.model, self.config, self.run, self.world = model, config, run, world
        self.governor = governor
        # Seconds of the time budget already used before the first step (the speed probe),
        # and those the last evaluation took: the final one must fit in the budget too.
        self.spent, self.eval_seconds, self.evaluated_at = spent, 0.0, 0.0
        self.evaluated_step = -math.inf  # the step of the last evaluation in this process
        self.cfg = config.train
        self.val_ids, self.device, self.dtype = val_ids, device, dtype
        self.quiet = quiet or not world.is_main
        # Under torchrun the global batch is world.size x batch_size rows (streams); each rank
        # trains on its own rows, and DDP averages the gradients.
        self.batches = make_batches(model.kind, train_ids, config.data.batch_size * world.size,
                                    config.data.seq_len, self.cfg.seed,
                                    jitter=config.data.seq_len_jitter)
        self.rows = world.rows(config.data.batch_size)
        self.net = (torch.nn.parallel.DistributedDataParallel(model.to(device))
                    if world.enabled else model)
        self.optimizer = make_optimizer(model, self.cfg)
        self.average = WeightAverage(model, self.cfg.ema) if self.cfg.ema else None
        self.progression = Progression()
        self.carried = None
        self.total_steps = self._total_steps()
        self.progression.budget = self._budget()
        # A loss this far above uniform guessing (ln vocab) means training has blown up.
        self.loss_bound = 2 * math.log(model.vocab_size) + 5
        self._stop_signal: int | None = None
        # Samples and TensorBoard; the samples' prime comes from the validation text, or from
        # the training text when there is none (--val-fraction 0).
        self.watch = Watch(run, self.cfg, model, val_ids if len(val_ids) else train_ids,
                           enabled=world.is_main)

    def _budget(self) -> list:
        """What a share of the budget is a share of (saved with the progression)."""
        return [self.cfg.max_time, self.total_steps]

    def _total_steps(self) -> int | None:
        limits = []
        if self.cfg.max_steps is not None:
            limits.append(int(self.cfg.max_steps))
        if self.cfg.epochs is not None:
            limits.append(max(1, round(self.cfg.epochs * self.batches.steps_per_epoch)))
        return min(limits) if limits else None

    # -- resume -------------------------------------------------------------------------
    def restore(self) -> None:
        self.carried, self.progression = restore_state(self.run, self.config, self.model,
                                                       self.optimizer, self.world, self.device,
                                                       self.average)
        p = self.progression
        if p.budget != self._budget():  # --more, or an older checkpoint
            p.budget, p.decay_from = self._budget(), None
            p.best_progress = self._progress(p.step)  # the plateau is judged afresh

    def save_last(self) -> None:
        self._check_weights()
        carried = gather_rows(self.carried, self.world)  # every rank's streams
        if self.world.is_main:
            save_state(self.run, self.model, self.optimizer, self.progression, carried,
                       self.average)

    # -- the loop -----------------------------------------------------------------------
    def fit(self) -> Progression:
        self.model.to(self.device).train()
        with self.watch:
            while True:
                try:
                    return self._fit_until_stopped()
                except TrainingDiverged as err:
                    self._roll_back(err)

    def _fit_until_stopped(self) -> Progression:
        p = self.progression
        start_time, start_elapsed = time.monotonic(), p.elapsed
        window = LossWindow(time.monotonic())
        progress = Progress(self.total_steps, self.cfg.max_time, p.step, p.elapsed, self.quiet,
                            loss_unit(self.config.data.tokenizer),
                            steps_per_epoch=self.batches.steps_per_epoch)
        with StopSignals(self), progress:
            status = self._status()
            while status == _RUNNING:
                window.add(*self._train_step(p.step))
                p.step += 1
                p.elapsed = start_elapsed + time.monotonic() - start_time
                status = self._status()
                evaluating = status == _DONE or self._evaluation_due()
                epoch_end = p.step % self.batches.steps_per_epoch == 0
                if (evaluating or epoch_end or p.step % self.cfg.log_every == 0
                        or status != _RUNNING or time.monotonic() - window.time >= LOG_SECONDS):
                    self._log(window, progress)  # checks for divergence before any save
                if epoch_end:
                    self._end_epoch(progress)
                if evaluating:
                    self._evaluate(progress)
                    self.save_last()
                if self.watch.sample_due(p.step, evaluating, status == _DONE):
                    self.watch.sample(p.step, p.elapsed, progress)
        if status == _SIGNALLED:
            self._stop_signal = self._stop_signal or signal.SIGTERM  # another rank's signal
            self.save_last()
            name = signal.Signals(self._stop_signal).name
            err = TrainingInterrupted(f"{name}: stopped at step {p.step} and saved; continue with "
                                      f"chargen train --resume {self.run.path}")
            err.exit_code = 128 + self._stop_signal
            raise err
        return p

    def _roll_back(self, err: TrainingDiverged) -> None:
        """With on_divergence=rollback: back to the last checkpoint at half the learning rate
        (at most MAX_ROLLBACKS times); otherwise re-raise."""
        p = self.progression
        if (self.cfg.on_divergence != "rollback" or p.rollbacks >= MAX_ROLLBACKS
                or not self.run.file(LAST).exists()):
            raise err
        elapsed, rollbacks, scale = p.elapsed, p.rollbacks + 1, p.lr_scale / 2
        self.restore()
        self.progression.elapsed, self.progression.rollbacks = elapsed, rollbacks
        self.progression.lr_scale = scale
        log.warning("%s\nrolled back to step %d; learning rate now x%g (rollback %d of %d)",
                    err, self.progression.step, scale, rollbacks, MAX_ROLLBACKS)

    def _check_weights(self) -> None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise self._diverged("the weights are no longer finite")

    def _diverged(self, what: str) -> TrainingDiverged:
        return TrainingDiverged(
            f"training diverged at step {self.progression.step} ({what}); the checkpoints saved "
            f"before are intact: resume with a lower --lr (chargen train --resume {self.run.path} "
            "--lr ...) or train with --on-divergence rollback"
        )

    def _evaluation_due(self) -> bool:
        """Every eval_every steps, unless a time-based evaluation came less than half that
        many steps ago; and at least every EVAL_SHARE of a time budget."""
        step = self.progression.step
        if step % self.cfg.eval_every == 0:
            return step - self.evaluated_step >= self.cfg.eval_every / 2
        return self._evaluation_due_by_time()

    def _evaluation_due_by_time(self) -> bool:
        """A time budget's share has passed since the last evaluation (one process only: under
        torchrun the ranks' clocks differ, and they must evaluate at the same step)."""
        if self.cfg.max_time is None or self.world.enabled:
            return False
        return self.progression.elapsed - self.evaluated_at >= EVAL_SHARE * self.cfg.max_time

    def _budget_used(self) -> float:
        """Seconds of the time budget used, counting the probe before training and the final
        evaluation still to come (timed as the last one)."""
        return self.progression.elapsed + self.spent + self.eval_seconds

    def _status(self) -> int:
        """Running, done or signalled: decided together by every rank (time budgets and
        signals can differ between processes, and they must stop at the same step)."""
        p = self.progression
        out_of_steps = self.total_steps is not None and p.step >= self.total_steps
        out_of_time = (self.cfg.max_time is not None and p.elapsed > 0
                       and self._budget_used() >= self.cfg.max_time)  # one step at least
        status = _DONE if out_of_steps or out_of_time or self.decayed() else _RUNNING
        if self._stop_signal is not None:
            status = _SIGNALLED
        return max_over_ranks(status, self.world, self.device)

    def decayed(self) -> bool:
        """A plateau brought the decay forward, and it is over: the run has ended."""
        p = self.progression
        return p.decay_from is not None and self._progress(p.step) >= p.decay_from + DECAY_SHARE

    def _time_share(self) -> float:
        """The share of the time budget used (0 without one)."""
        return self._budget_used() / self.cfg.max_time if self.cfg.max_time else 0.0

    def _progress(self, step: int) -> float:
        """The share of the budget used: of its steps or its time, whichever is larger."""
        return max(step / self.total_steps if self.total_steps else 0.0, self._time_share())

    def _train_step(self, step: int) -> tuple[torch.Tensor, int]:
        """One optimiser step -> (its loss on the device, the input positions it ran)."""
        lr = self.cfg.lr * self.progression.lr_scale * lr_factor(
            self._progress(step), step, self.cfg, self._time_share(), self.progression.decay_from)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = (to_device(t[self.rows], self.device) for t in self.batches.batch(step))
        state = None if self.batches.starts_new_stream(step) else self.carried
        with autocast(self.device, self.dtype):
            logits, state = self.net(x, state)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.model)
        self.carried = detach_state(state) if self.model.kind.carries_state else None
        return loss.detach(), x.numel()

    def _log(self, window: LossWindow, progress: Progress) -> None:
        p = self.progression
        steps = window.count
        loss, chars_per_s = window.flush(time.monotonic())
        if self.governor is not None:
            self.governor.check()  # another process may have started or ended
        if self.world.enabled:  # the mean over ranks, so that every rank judges the same loss
            loss = sum_all([loss], self.world, self.device)[0] / self.world.size
            chars_per_s *= self.world.size
            if not same_everywhere(self.model, self.world, self.device):
                raise ChargenError(f"the ranks' weights differ at step {p.step}; report a bug")
        if not math.isfinite(loss) or loss > self.loss_bound:
            raise self._diverged(f"loss {loss:.4g}")
        p.epoch_loss_sum += loss * steps
        p.epoch_loss_steps += steps
        if not self.world.is_main:
            return
        record = {"step": p.step, "time": round(p.elapsed, 3), "train_loss": loss,
                  "lr": self.optimizer.param_groups[0]["lr"], "chars_per_s": round(chars_per_s)}
        if self.governor is not None:
            record["threads"] = self.governor.threads
        self.run.append_metrics(record)
        self.watch.record(record)
        progress.update(p.step, p.elapsed, loss=loss, chars_per_s=chars_per_s)

    def _end_epoch(self, progress: Progress) -> None:
        """The epoch's mean training loss, as Keras reports it; with keep=train-loss, best
        holds the weights of the epoch with the lowest one (Keras ModelCheckpoint on 'loss')."""
        p = self.progression
        loss = p.epoch_loss_sum / max(p.epoch_loss_steps, 1)
        seconds = p.elapsed - p.epoch_started
        improved = loss < p.best_train
        if improved:
            p.best_train, p.best_train_step = loss, p.step
            if self.cfg.keep == "train-loss" and self.world.is_main:
                self._check_weights()
                save_checkpoint(self.run.file(BEST), self.model.state_dict(),
                                info={"step": p.step, "train_loss": loss})
        p.epoch_loss_sum, p.epoch_loss_steps, p.epoch_started = 0.0, 0, p.elapsed
        if not self.world.is_main:
            return
        epoch = p.step // self.batches.steps_per_epoch
        self.run.append_metrics({"step": p.step, "time": round(p.elapsed, 3), "epoch": epoch,
                                 "epoch_train_loss": loss, "epoch_seconds": round(seconds, 3),
                                 "best": improved and self.cfg.keep == "train-loss"})
        progress.epoch(epoch, loss, seconds, improved and self.cfg.keep == "train-loss")

    def _evaluate(self, progress: Progress) -> None:
        p = self.progression
        if not len(self.val_ids):  # --val-fraction 0 (with --keep train-loss)
            return
        started = time.monotonic()
        result, best, extra = self._score(self.model), self.model, {}
        if self.average is not None:  # the average competes for best on equal terms
            averaged = self._score(self.average.model)
            extra = {"val_loss_raw": result.nats, "val_loss_ema": averaged.nats}
            if averaged.nats < result.nats:
                result, best = averaged, self.average.model
        self.eval_seconds = time.monotonic() - started
        self.evaluated_at, self.evaluated_step = p.elapsed, p.step
        improved = result.nats < p.best_val
        if improved:
            self._check_weights()
            p.best_val, p.best_step = result.nats, p.step
            info = {"step": p.step, "val_loss": result.nats}
            if self.world.is_main and self.cfg.keep == "val-loss":
                save_checkpoint(self.run.file(BEST), best.state_dict(), info=info)
            p.best_progress = self._progress(p.step)
        elif p.decay_from is None and decay_starts(self._progress(p.step), p.best_progress, self.cfg):
            extra["decay_from"] = p.decay_from = self._progress(p.step)
            self._decay_from_best(progress)
        if not self.world.is_main:
            return
        record = {"step": p.step, "time": round(p.elapsed, 3), "val_loss": result.nats,
                  "val_bpc": result.bits, "best": improved, **extra}
        self.run.append_metrics(record)
        self.watch.record(record)
        progress.validation(p.step, result.nats, result.bits, improved)

    def _decay_from_best(self, progress: Progress) -> None:
        """A plateau: the decay starts from the best weights. From the weights of the plateau's
        end it made things worse on Alice (1.3574 at minute 5 of 60, 1.38 after the decay), the
        peak rate having memorised on since the best (RESULTS.md)."""
        p = self.progression
        if restore_best(self.run, self.config, self.model):
            self.carried = None  # the streams' state came from the other weights
            if self.average is not None:
                self.average = WeightAverage(self.model, self.cfg.ema)
        progress.end_at(p.decay_from + DECAY_SHARE)
        log.info("the validation loss has not improved since step %d: from its weights the "
                 "learning rate decays, and the run ends at %d%% of its budget (--patience 0: "
                 "train on at the peak rate)", p.best_step, round(100 * (p.decay_from + DECAY_SHARE)))

    def _score(self, model: RNNLanguageModel):
        return evaluate_ids(model, self.val_ids, self.config.data.seq_len, self.device,
                            self.dtype, self.cfg.eval_chars, self.world)
