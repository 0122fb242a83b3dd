"""`chargen alphabet`: tutorial A's "learn the alphabet" experiment (SEEDS.md, section A).

Four framings of A..Z -> 0..25, each learnt by LSTM(32) -> Dense(26, softmax) with
categorical cross-entropy, Adam, 500 epochs, batch size 1, accuracy on the training pairs
themselves; every framing is trained with several seeds, once with the tutorial's scalar
input (id / 26) and once with a trained embedding (Embedding(26, 8) per input id).
Framing 4 pads its 1..5-letter runs on the left with id 0, exactly as the tutorial's
`pad_sequences` did, although 0 is also 'A' (0 / 26 = 0.0): the padding is not masked.

Per model this follows the Keras 1.x the 2016 tutorial ran: hard_sigmoid gates
(clip(0.2 z + 0.5, 0, 1)), glorot-uniform kernels drawn per gate (fan-out 32, not 128),
an orthogonal recurrent kernel per gate, one zero LSTM bias with the forget gate's at 1,
glorot-uniform Dense, embedding uniform in +-0.05; Adam with lr 1e-3, betas 0.9 / 0.999
and eps 1e-7 added to sqrt(v) as Keras adds it (tf.keras's eps; Keras 1 used 1e-8), one
update per training pair, the pairs reshuffled every epoch (Keras's shuffle=True).
Differences: the loss is softmax cross-entropy on the logits (tf.keras's path; Keras 1
clipped probabilities at 1e-7); the orthogonal kernels are not scaled by Keras 1's 1.1 (with
it, framing 4's mean over 20 seeds fell from 98.99% to 98.11%, two seeds stopping near 90%;
framings 1 and 2 are one step and never use it); random streams are numpy's, not
Theano's/TF's, so single runs differ from the tutorial's; the table gives mean and minimum
over seeds. With modern Keras defaults (sigmoid gates, fused-kernel glorot) framing 1 to 3
scored 84.8%, 86.1% and 97.4% (5 seeds, 500 epochs) against 86.4%, 86.1% and 100% with these.

Why it is not PyTorch: batch size 1 means 12,500 strictly sequential Adam updates per model
for framings 1-3 and 500,000 for framing 4, times 5 seeds times 2 inputs. The fused
`nn.LSTM` serves large batches; here framework overhead is all there is. Stacking the 10
framing-4 models along a group dimension (bmm LSTM, autograd, foreach Adam: one batched
step = every model's batch-1 step) measured 3.4 ms per step on this 2-core machine, i.e.
~1,700 s for framing 4 alone; torch.func's vmap over stacked parameters pays the same
per-operator dispatch. So each model's whole training run is one numba-compiled loop
(`lstm_kernel.train`: forward, hand-written backward, Adam; the test suite checks it
against PyTorch autograd and torch.optim.Adam), and the ensemble is all models run on
a thread pool (the compiled loop releases the GIL), longest first. Each model keeps its
own data order and Adam state, so training many at once changes nothing (also tested).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

from ..errors import ChargenError, ConfigError

log = logging.getLogger("chargen")

LETTERS = 26
HIDDEN = 32
EMBEDDING_DIM = 8
ENCODINGS = ("scalar", "embedding")
HARD_GATES = True  # Keras 1.x's LSTM default, which the tutorial ran
ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7}


@dataclasses.dataclass(frozen=True)
class Framing:
    name: str
    steps: int  # time steps per input
    features: int  # letters per time step
    tutorial_accuracy: float
    runs: int = 0  # > 0: that many random runs of 1..steps letters, left-padded with 0


FRAMINGS = (
    Framing("one char -> next", 1, 1, 0.84),
    Framing("3-char feature window", 1, 3, 0.8696),
    Framing("3-char time-step window", 3, 1, 1.0),
    Framing("1-5 chars, left-padded", 5, 1, 0.986, runs=1000),
)


def framing_pairs(framing: Framing, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Letter ids (pairs, steps, features) and the letter that follows each input."""
    if framing.runs:
        return _padded_runs(framing.runs, framing.steps, rng)
    width = framing.steps * framing.features
    starts = np.arange(LETTERS - width)
    ids = starts[:, None] + np.arange(width)
    return (ids.reshape(-1, framing.steps, framing.features).astype(np.int32),
            (starts + width).astype(np.int32))


def _padded_runs(runs: int, max_len: int, rng: np.random.Generator):
    # The tutorial's draws: start in 0..23, end in start..min(start + 4, 24), target end + 1.
    starts = rng.integers(0, LETTERS - 2, size=runs)
    ends = rng.integers(starts, np.minimum(starts + max_len, LETTERS - 1))
    letters = ends[:, None] - np.arange(max_len - 1, -1, -1)
    ids = np.where(letters >= starts[:, None], letters, 0)
    return ids[:, :, None].astype(np.int32), (ends + 1).astype(np.int32)


@dataclasses.dataclass
class Job:
    """One model: its data, its pair order for every epoch, its flat weights and Adam state."""

    framing: Framing
    encoding: str
    seed: int
    ids: np.ndarray
    targets: np.ndarray
    order: np.ndarray
    params: np.ndarray
    shape: tuple  # (table rows, table dim, hidden, classes)
    seconds: float = 0.0

    def weights(self) -> dict[str, np.ndarray]:
        """Views into params by name: table, w_ih, w_hh, b, w_out, b_out."""
        rows, dim, hidden, classes = self.shape
        places = _kernel().layout(rows, dim, self.ids.shape[2] * dim, hidden, classes)
        return {name: self.params[start:start + math.prod(shape)].reshape(shape)
                for name, (start, shape) in places.items()}


def make_job(framing: Framing, encoding: str, seed: int, epochs: int) -> Job:
    ids, targets = framing_pairs(framing, np.random.default_rng([seed, 0]))
    order_rng = np.random.default_rng([seed, 2])
    order = order_rng.permuted(np.tile(np.arange(len(targets), dtype=np.int32), (epochs, 1)), axis=1)
    dim = EMBEDDING_DIM if encoding == "embedding" else 1
    shape = (LETTERS, dim, HIDDEN, LETTERS)
    job = Job(framing, encoding, seed, ids, targets, order.ravel(), np.zeros(0, np.float32), shape)
    places = _kernel().layout(LETTERS, dim, framing.features * dim, HIDDEN, LETTERS)
    job.params = np.zeros(sum(math.prod(shape) for _, shape in places.values()), np.float32)
    _keras_init(job.weights(), encoding, np.random.default_rng([seed, 1]))
    return job


def _keras_init(weights: dict[str, np.ndarray], encoding: str, rng: np.random.Generator) -> None:
    if encoding == "embedding":
        weights["table"][:] = rng.uniform(-0.05, 0.05, weights["table"].shape)
    else:
        weights["table"][:, 0] = np.arange(LETTERS) / LETTERS
    # Keras 1.x kept one (inputs, hidden) kernel per gate: glorot's fan-out is hidden, not
    # 4 * hidden, and each gate's recurrent kernel is orthogonal on its own.
    hidden = weights["w_hh"].shape[0]
    for name, fan_out in (("w_ih", hidden), ("w_out", weights["w_out"].shape[1])):
        limit = math.sqrt(6 / (weights[name].shape[0] + fan_out))
        weights[name][:] = rng.uniform(-limit, limit, weights[name].shape)
    for gate in range(4):
        q, r = np.linalg.qr(rng.standard_normal((hidden, hidden)))
        weights["w_hh"][:, gate * hidden:(gate + 1) * hidden] = q * np.sign(np.diag(r))
    weights["b"][hidden:2 * hidden] = 1.0  # unit_forget_bias


def _kernel():
    try:
        from . import lstm_kernel
    except ImportError as err:
        raise ChargenError(f"chargen alphabet needs numba ({err}); install it with "
                           "pip install 'chargen[experiments]'") from None
    return lstm_kernel


def train_jobs(jobs: list[Job], threads: int | None = None) -> None:
    """Train every job in place, `threads` at a time (default: the usable CPU cores)."""
    kernel = _kernel()
    threads = threads or len(os.sched_getaffinity(0))

    def train_one(job: Job) -> None:
        started = time.perf_counter()
        moments = np.zeros((2, job.params.size), np.float32)
        kernel.train(job.params, moments[0], moments[1], job.shape, job.ids, job.targets, job.order,
                     job.encoding == "embedding", HARD_GATES, ADAM["lr"], ADAM["beta1"], ADAM["beta2"],
                     ADAM["eps"])
        job.seconds = time.perf_counter() - started

    longest_first = sorted(jobs, key=lambda job: -job.order.size * job.ids.shape[1])
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        running = [pool.submit(train_one, job) for job in longest_first]
        for done, future in enumerate(as_completed(running), 1):
            future.result()
            # a line per model: the whole experiment takes minutes
            log.info("alphabet: %d of %d models trained, %.0f s", done, len(jobs),
                     time.perf_counter() - started)


def accuracy(job: Job) -> float:
    return float(np.mean(_kernel().predict(job.params, job.shape, job.ids, HARD_GATES) == job.targets))


def run_experiment(epochs: int = 500, seeds: int = 5, threads: int | None = None) -> dict:
    """Train every framing x input encoding x seed; one summary row per framing and encoding."""
    if epochs < 1 or seeds < 1:
        raise ConfigError(f"--epochs and --seeds must be at least 1 (got {epochs} and {seeds})")
    started = time.perf_counter()
    jobs = [make_job(framing, encoding, seed, epochs)
            for encoding in ENCODINGS for framing in FRAMINGS for seed in range(seeds)]
    train_jobs(jobs, threads)
    rows = []
    for encoding in ENCODINGS:
        for framing in FRAMINGS:
            group = [job for job in jobs if job.framing == framing and job.encoding == encoding]
            scores = [accuracy(job) for job in group]
            rows.append({"framing": framing.name, "input": encoding,
                         "input_shape": _input_shape(framing, encoding),
                         "tutorial": framing.tutorial_accuracy if encoding == "scalar" else None,
                         "mean": float(np.mean(scores)), "min": float(np.min(scores)),
                         "seconds": sum(job.seconds for job in group)})
    return {"epochs": epochs, "seeds": seeds, "threads": threads or len(os.sched_getaffinity(0)),
            "wall_seconds": time.perf_counter() - started, "rows": rows}


def _input_shape(framing: Framing, encoding: str) -> str:
    if encoding == "scalar":
        return f"({framing.steps}, {framing.features}) id/26"
    return f"({framing.steps}, {framing.features}) ids -> ({framing.steps}, " \
           f"{framing.features * EMBEDDING_DIM}) embedded"


def format_table(result: dict) -> str:
    header = ("| framing | input shape | tutorial | chargen mean | chargen min | seconds |\n"
              "|---|---|---:|---:|---:|---:|")
    lines = [header]
    for row in result["rows"]:
        tutorial = "-" if row["tutorial"] is None else f"{row['tutorial']:.2%}"
        lines.append(f"| {row['framing']} | {row['input_shape']} | {tutorial} | {row['mean']:.2%} "
                     f"| {row['min']:.2%} | {row['seconds']:.1f} |")
    lines.append(f"\n{result['seeds']} seeds x {len(result['rows'])} rows, {result['epochs']} epochs, "
                 f"batch 1; seconds: training time summed over the seeds; wall "
                 f"{result['wall_seconds']:.1f} s on {result['threads']} threads")
    return "\n".join(lines)
