"""The one generation loop, shared by every consumer: the API and CLI, interactive mode, the
samples shown while training, the server's batch and the ONNX export.

A Generation is one request: its prompt, its settings (a SampleConfig) and where its text goes.
The Engine steps the rows of every generation in progress together over one reader (readers.py,
or the ONNX sampler's numpy readers): per step it applies each generation's repetition penalty
to its rows, masks the ids never sampled, draws each group of rows that share top-k / top-p
(temperature is per row) with each generation's own random numbers, and pushes the chosen ids.
A generation leaves when it has its length, meets its stop sequences, reaches a document's
[end] on every sample, fails alone, or is cancelled. Random numbers come from numpy's PCG64
seeded by the request, drawn a block of steps at a time: the same numbers whatever the backend
and whatever else is in the batch, so a seed gives one text everywhere. No torch import here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..config import SampleConfig
from ..documents import end_rows
from ..errors import ChargenError
from ..pieces import StopWatch

# What a generation hands its owner: ("pieces", [text per sample]), ("done", timing dict) or
# ("error", message). Called on the thread that steps the engine.
Deliver = Callable[[tuple[str, object]], None]

UNIFORM_BLOCK = 256  # steps of random numbers drawn per call of the generator
NOT_FINITE = ("generation failed: the probabilities were not finite (a setting out of "
              "range?)")


class Generation:
    """One request: its prompt ids, settings and delivery; its text state once it runs."""

    def __init__(self, prompt, settings: SampleConfig, deliver: Deliver | None = None):
        self.prompt, self.settings, self.deliver = prompt, settings, deliver
        self.submitted = time.perf_counter()
        self.cancelled = False  # set by the owner's thread; the engine drops the rows
        self.steps, self.chars, self.started = 0, 0, self.submitted
        self.uniforms: np.ndarray | None = None  # this step's random number per sample
        self.wants_ids = False  # also deliver ("ids", the step's ids) before the text
        # Read every step, so plain attributes rather than properties of the settings:
        self.num, self.length, self.stops = settings.num, settings.length, bool(settings.stop)
        self.greedy = settings.greedy or settings.temperature == 0
        self.group = (True, 0, 1.0) if self.greedy else (False, settings.top_k, settings.top_p)
        self.temperatures = [settings.temperature] * self.num
        self.watches: list[StopWatch] = []  # per sample, from start()
        self.ended: list[bool] = []

    def start(self, tokenizer, ops, kind) -> None:
        vocab = kind.vocab_size
        seed = self.settings.seed if self.settings.seed is not None else secrets.randbits(63)
        self.random = np.random.default_rng(seed)
        self.seen = None  # with a repetition penalty: the ids each sample's text holds
        if self.settings.repetition_penalty != 1.0:
            self.seen = ops.seen(self.num, vocab, self.prompt)
        self.decoders = (None if tokenizer.stream_decoder is None
                         else [tokenizer.stream_decoder() for _ in range(self.num)])
        self.watches = [StopWatch(self.settings.stop) for _ in range(self.num)]
        self.started, self._block, self._used = time.perf_counter(), None, 0
        self.end_id = kind.end_id  # a document run's [end]
        self.ended = [False] * self.num

    def next_uniforms(self) -> np.ndarray:
        """This step's random number per sample, from a block of steps drawn at once (the same
        numbers as one draw per step)."""
        if self._block is None or self._used == len(self._block):
            steps = max(1, min(UNIFORM_BLOCK, self.length - self.steps))
            self._block, self._used = self.random.random((steps, self.num), dtype=np.float32), 0
        self._used += 1
        return self._block[self._used - 1]

    def advance(self, ids: list[int]) -> bool:
        """Turn this step's ids into text for the owner; -> True once the generation is over.
        A document run's sample ends at [end] (decoded as nothing): it stays ended."""
        self.steps += 1
        over = self.steps >= self.length
        if self.decoders is None:  # ids only, no text
            if over:
                self.finish()
            return over
        if self.end_id is not None:
            ids, self.ended = end_rows(ids, self.ended, self.end_id)
            over = over or all(self.ended)
        pieces = [decode([token]) for decode, token in zip(self.decoders, ids)]
        if self.stops:
            pieces = [watch.feed(piece) for watch, piece in zip(self.watches, pieces)]
            over = over or all(watch.done for watch in self.watches)
            if over:
                pieces = [piece + watch.flush() for piece, watch in zip(pieces, self.watches)]
        if any(pieces):
            self.chars += sum(map(len, pieces))
            self.deliver(("pieces", pieces))
        if over:
            self.finish()
        return over

    def finish(self) -> None:
        now = time.perf_counter()
        generating = max(now - self.started, 1e-9)
        stopped = [watch.done or ended for watch, ended in zip(self.watches, self.ended)]
        self.deliver(("done", {
            "tokens": self.steps, "characters": self.chars, "stopped": stopped,
            "queued_seconds": round(self.started - self.submitted, 6),
            "generating_seconds": round(generating, 6),
            "characters_per_second": round(self.chars / generating, 1)}))


class Engine:
    """The rows of every running generation, stepped together over one reader."""

    def __init__(self, ops, kind, tokenizer):
        """kind: the run's (kinds.RunKind): its vocabulary and its end rule."""
        self.ops, self.kind, self.tokenizer = ops, kind, tokenizer
        self.bias = ops.bias(kind.vocab_size, tokenizer.never_sample)
        self.running: list[Generation] = []  # in row order
        self.reader = None
        self.penalties = 0  # running generations with a repetition penalty

    def join(self, generation: Generation, reader) -> None:
        """Start `generation` with `reader` holding its rows (its prompt read)."""
        generation.start(self.tokenizer, self.ops, self.kind)
        if generation.settings.length == 0:
            generation.finish()
            return
        if self.running:
            self.reader.join(reader)
        else:
            self.reader = reader
        self.running.append(generation)
        self.penalties += generation.seen is not None

    def step(self) -> None:
        """One token for every running generation."""
        next_ids, failed = self._choose(self.reader.logits)
        ids = next_ids.tolist()
        self._check_ids(ids, failed)
        for generation, message in failed.items():
            generation.deliver(("error", message))
        offset, finished, alone = 0, list(failed), len(self.running) == 1
        for generation in self.running:
            num = generation.num
            if generation not in failed:
                mine = next_ids if alone else next_ids[offset : offset + num]
                if generation.wants_ids:
                    generation.deliver(("ids", mine))
                if generation.seen is not None:
                    self.ops.mark(generation.seen, mine)
                if generation.advance(ids if alone else ids[offset : offset + num]):
                    finished.append(generation)
            offset += num
        keep = self._remove(finished)
        if keep is not None:
            next_ids = self.ops.take(next_ids, keep)
            self.reader.select(keep)
        if self.running:
            self.reader.push(next_ids)

    def leave(self, leaving: list[Generation]) -> None:
        """Drop generations (cancelled, or failed outside a step)."""
        keep = self._remove(leaving)
        if keep is not None:
            self.reader.select(keep)

    def _remove(self, leaving: list[Generation]):
        """Take generations out of the running list; -> the kept rows' index (None when
        nothing left or nothing kept)."""
        if not leaving:
            return None
        gone = {id(g) for g in leaving}
        keep, offset = [], 0
        for generation in self.running:
            if id(generation) not in gone:
                keep.extend(range(offset, offset + generation.num))
            offset += generation.num
        self.running = [g for g in self.running if id(g) not in gone]
        self.penalties = sum(g.seen is not None for g in self.running)
        if not self.running:
            self.reader = None
            return None
        return self.ops.index(keep)

    def _choose(self, logits) -> tuple[object, dict[Generation, str]]:
        """Next id per row, and the generations whose rows could not be drawn (with why).
        Every operation works row by row, so one request's bad row cannot change another's."""
        if self.penalties:
            logits = self._penalized(logits)
        if self.bias is not None:
            logits = logits + self.bias
        failed: dict[Generation, str] = {}
        for generation in self.running:  # drawn every step, whatever happens below, so that
            if not generation.greedy:  # each request's numbers stay its own
                generation.uniforms = generation.next_uniforms()
        if len(self.running) == 1:  # the usual case outside the server: no gathering
            generation = self.running[0]
            return self._draw(logits, generation.group, self.running, failed), failed
        groups: dict[tuple, list[Generation]] = {}
        rows: dict[tuple, list[int]] = {}
        offset = 0
        for generation in self.running:
            groups.setdefault(generation.group, []).append(generation)
            rows.setdefault(generation.group, []).extend(range(offset, offset + generation.num))
            offset += generation.num
        if len(groups) == 1:
            (key, members), = groups.items()
            return self._draw(logits, key, members, failed), failed
        chosen = self.ops.empty_ids(len(logits))
        for key, members in groups.items():
            index = self.ops.index(rows[key])
            chosen[index] = self._draw(self.ops.take(logits, index), key, members, failed)
        return chosen, failed

    def _penalized(self, logits):
        """Each generation's repetition penalty on its own rows."""
        logits, offset = self.ops.copy(logits), 0
        for generation in self.running:
            num = generation.num
            if generation.seen is not None:
                logits[offset : offset + num] = self.ops.penalize(
                    logits[offset : offset + num], generation.seen,
                    generation.settings.repetition_penalty)
            offset += num
        return logits

    def _draw(self, logits, key: tuple, generations: list[Generation], failed: dict):
        """One group's ids; a generation whose draw raises is marked failed (drawn alone with
        its own random numbers to find it) and the rest are kept."""
        try:
            if key[0]:
                return self.ops.greedy(logits)
            if len(generations) == 1:
                temperatures, uniforms = generations[0].temperatures, generations[0].uniforms
            else:
                temperatures = [t for g in generations for t in g.temperatures]
                uniforms = np.concatenate([g.uniforms for g in generations])
            return draw(self.ops, logits, key[1], key[2], temperatures, uniforms)
        except Exception as err:
            if len(generations) == 1:
                failed[generations[0]] = f"generation failed: {err}"
                return self.ops.empty_ids(len(logits))
            starts = np.cumsum([0] + [g.num for g in generations]).tolist()
            parts = [logits[start : start + g.num] for g, start in zip(generations, starts)]
            return self.ops.cat([self._draw(part, key, [g], failed)
                                 for part, g in zip(parts, generations)])

    def _check_ids(self, ids: list[int], failed: dict) -> None:
        """A row whose probabilities were not finite draws an id past the vocabulary: its
        generation fails (and its rows leave before the next step reads them)."""
        if max(ids) < self.kind.vocab_size:  # the usual case, at the cost of one max()
            return
        offset = 0
        for generation in self.running:
            if max(ids[offset : offset + generation.num]) >= self.kind.vocab_size:
                failed.setdefault(generation, NOT_FINITE)
            offset += generation.num


def draw(ops, logits, top_k: int, top_p: float, temperatures: list[float], uniforms: np.ndarray):
    """(rows, vocab) logits, a temperature and a uniform number per row -> (rows,) ids: the
    same steps on either backend, so the same numbers give the same ids."""
    if temperatures.count(1.0) != len(temperatures):
        logits = ops.divide_rows(logits, temperatures)
    if top_k:
        logits = ops.top_k(logits, top_k)
    if top_p < 1.0:
        logits = ops.top_p(logits, top_p)
    return ops.invert_cdf(ops.softmax(logits), uniforms)


def generate_alone(engine: Engine, generation: Generation, reader,
                   wanted: str = "pieces") -> Iterator:
    """Run one generation to its end on the caller's thread: its text pieces, step by step
    (one piece per sample; steps that produce no text yield nothing), or with wanted="ids"
    each step's ids."""
    generation.wants_ids = wanted == "ids"
    events: list[tuple[str, object]] = []
    generation.deliver = events.append
    engine.join(generation, reader)
    while True:
        for kind, payload in events:
            if kind == wanted:
                yield payload
            elif kind == "error":
                raise ChargenError(str(payload))
        events.clear()
        if generation not in engine.running:
            return
        engine.step()
