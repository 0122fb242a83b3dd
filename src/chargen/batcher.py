"""Dynamic batching for the server: one worker thread owns the model, and every step runs one
decoder step over the rows of all the generations in progress (for a window model, one
forward pass over every row's window).

A generation (one request) joins with its prompt consumed and its `num` state rows appended;
it leaves when it has its length, meets its stop sequences, or its client goes away. Rows are
sampled in groups that share top-k / top-p (temperature is a per-row column), each request
drawing from its own seeded generator, so a seeded request gives the same text alone or
batched with others (and the same as `chargen sample` with that seed).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .decode import Decoder, decode_dtype
from .documents import end_rows
from .model import select_state
from .sampling import (
    StopWatch,
    banned_bias,
    consume_prompt,
    invert_cdf,
    penalize_repetition,
    top_k_filter,
    top_p_filter,
)
from .sliding import initial_windows, slide, window_logits

log = logging.getLogger("chargen")

# What the worker hands a generation's owner: ("pieces", [text per sample]),
# ("done", timing dict) or ("error", message). Called on the worker thread.
Deliver = Callable[[tuple[str, object]], None]


UNIFORM_BLOCK = 256  # steps of random numbers drawn per generator call


class Busy(Exception):
    """The bounded queue is full: the request is refused (HTTP 503)."""


@dataclass(frozen=True)
class Settings:
    length: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0


@dataclass(eq=False)
class Generation:
    """One request: its prompt, settings, sampler and per-sample text state."""

    prompt: torch.Tensor  # (prompt_len,) ids
    settings: Settings
    deliver: Deliver
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False  # set by the owner's thread; the worker drops the rows
    uniforms: list[float] | None = None  # this step's random number per sample (worker only)

    def start(self, tokenizer, device=None) -> None:
        seed = self.settings.seed if self.settings.seed is not None else secrets.randbits(63)
        self.seen = None  # with a repetition penalty: the ids each sample's text holds
        if self.settings.repetition_penalty != 1.0:
            self.seen = torch.zeros(self.settings.num, tokenizer.vocab_size, dtype=torch.bool,
                                    device=device)
            self.seen[:, self.prompt.to(device)] = True
        self.generator = torch.Generator().manual_seed(seed)
        self.decoders = [tokenizer.stream_decoder() for _ in range(self.settings.num)]
        self.watches = [StopWatch(self.settings.stop) for _ in range(self.settings.num)]
        self.steps, self.chars, self.started = 0, 0, time.perf_counter()
        self._uniforms: list[list[float]] = []
        self.end_id = getattr(tokenizer, "end_id", None)  # a document run's [end]
        self.ended = [False] * self.settings.num

    def next_uniforms(self) -> list[float]:
        """This step's random number per sample. Drawn from the generator a block of steps at
        a time: the same numbers as one draw per step, for one call where there were many."""
        if not self._uniforms:
            steps = max(1, min(UNIFORM_BLOCK, self.settings.length - self.steps))
            self._uniforms = torch.rand((steps, self.settings.num), generator=self.generator).tolist()
            self._uniforms.reverse()
        return self._uniforms.pop()

    @property
    def sampling_group(self) -> tuple:
        greedy = self.settings.temperature == 0
        return (True, 0, 1.0) if greedy else (False, self.settings.top_k, self.settings.top_p)

    def advance(self, ids: list[int]) -> bool:
        """Turn this step's ids into text for the owner; -> True once the generation is over.
        A document run's sample ends at [end] (decoded as nothing): it stays ended."""
        self.steps += 1
        if self.end_id is not None:
            ids, self.ended = end_rows(ids, self.ended, self.end_id)
        pieces = [decode([token]) for decode, token in zip(self.decoders, ids)]
        if self.settings.stop:
            pieces = [watch.feed(piece) for watch, piece in zip(self.watches, pieces)]
        over = (self.steps >= self.settings.length or all(self.ended) or (
            bool(self.settings.stop) and all(watch.done for watch in self.watches)))
        if over and self.settings.stop:
            pieces = [piece + watch.flush() for piece, watch in zip(pieces, self.watches)]
        self._send(pieces)
        if over:
            self.finish()
        return over

    def _send(self, pieces: list[str]) -> None:
        if any(pieces):
            self.chars += sum(len(piece) for piece in pieces)
            self.deliver(("pieces", pieces))

    def finish(self) -> None:
        now = time.perf_counter()
        generating = max(now - self.started, 1e-9)
        self.deliver(("done", {
            "tokens": self.steps, "characters": self.chars,
            "queued_seconds": round(self.started - self.submitted, 6),
            "generating_seconds": round(generating, 6),
            "characters_per_second": round(self.chars / generating, 1)}))


class _StateRows:
    """Stream, sequence and document models: each row's recurrent state (the Decoder's
    per-layer list), one decoder step per token."""

    def __init__(self, net, dtype, max_active: int):
        self.net = net
        self.decoder = Decoder(net, dtype, rows=max_active)

    def start(self, prompt: torch.Tensor, num: int) -> tuple[list, torch.Tensor]:
        """The prompt consumed in one forward pass, its state repeated for each sample."""
        logits, state = consume_prompt(self.net, prompt)
        rows = torch.zeros(num, dtype=torch.long, device=prompt.device)
        return self.decoder.split_state(select_state(state, rows)), logits.index_select(0, rows)

    def step(self, next_ids: torch.Tensor, layers: list) -> tuple[torch.Tensor, list]:
        return self.decoder.step(next_ids, layers)

    @staticmethod
    def cat(first: list, second: list) -> list:
        if isinstance(first[0], tuple):
            return [tuple(torch.cat(parts) for parts in zip(a, b)) for a, b in zip(first, second)]
        return [torch.cat((a, b)) for a, b in zip(first, second)]

    @staticmethod
    def select(layers: list, rows: torch.Tensor) -> list:
        if isinstance(layers[0], tuple):
            return [tuple(part.index_select(0, rows) for part in layer) for layer in layers]
        return [layer.index_select(0, rows) for layer in layers]


class _WindowRows:
    """Window models: each row's last `window` ids, read afresh for every token (sliding.py)."""

    def __init__(self, net):
        self.net = net

    def start(self, prompt: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = initial_windows(prompt, num, self.net.framing.window, self.net.framing.pad_id)
        return windows, window_logits(self.net, windows)

    def step(self, next_ids: torch.Tensor, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        windows = slide(windows, next_ids)
        return window_logits(self.net, windows), windows

    @staticmethod
    def cat(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return torch.cat((first, second))

    @staticmethod
    def select(windows: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return windows.index_select(0, rows)


class Batcher:
    """submit() generations from any thread; one worker thread steps them all together.
    At most `max_active` run at once and `queue_size` wait; beyond that submit() raises Busy."""

    def __init__(self, model, max_active: int, queue_size: int, precision: str = "auto"):
        self.net, self.tokenizer = model.net, model.tokenizer
        self.device = model.device
        self.max_active, self.queue_size = max_active, queue_size
        dtype = decode_dtype(self.device, max_active, model.config.model.hidden_size, precision)
        self.rows = (_WindowRows(self.net) if self.net.framing.windowed
                     else _StateRows(self.net, dtype, max_active))
        self.bias = banned_bias(self.net.vocab_size, self.tokenizer.never_sample, self.device)
        self._cond = threading.Condition()
        self._waiting: deque[Generation] = deque()
        self._running: list[Generation] = []  # in row order; touched by the worker only
        self._active_count = 0
        self._state = None  # every running row's: _StateRows' layer list or _WindowRows' ids
        self._logits: torch.Tensor | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="chargen-batcher", daemon=True)
        self._thread.start()

    def submit(self, generation: Generation) -> None:
        with self._cond:
            if self._active_count + len(self._waiting) >= self.max_active + self.queue_size:
                raise Busy(f"the server is busy (generations: {self.max_active} running, "
                           f"{self.queue_size} waiting); try again shortly")
            self._waiting.append(generation)
            self._cond.notify()

    def cancel(self, generation: Generation) -> None:
        """Drop a generation (its client went away); a no-op once it has finished."""
        with self._cond:
            generation.cancelled = True
            self._cond.notify()

    def counts(self) -> dict[str, int]:
        with self._cond:
            return {"active": self._active_count, "queued": len(self._waiting)}

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def _work(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._stopping or self._waiting or self._running):
                        self._cond.wait()
                    if self._stopping:
                        return
                    joining = self._take_waiting()
                for generation in joining:
                    self._join(generation)
                self._leave([g for g in self._running if g.cancelled])
                if self._running:
                    self._step_safely()

    def _take_waiting(self) -> list[Generation]:
        joining = []
        while self._waiting and self._active_count < self.max_active:
            generation = self._waiting.popleft()
            if not generation.cancelled:
                joining.append(generation)
                self._active_count += 1
        return joining

    def _join(self, generation: Generation) -> None:
        try:
            state, logits = self.rows.start(generation.prompt.to(self.device),
                                            generation.settings.num)
            if self._running:
                state = self.rows.cat(self._state, state)
                logits = torch.cat((self._logits, logits))
        except Exception as err:  # e.g. out of memory on a huge prompt: only this request fails
            log.exception("prompt failed")
            generation.deliver(("error", f"the prompt could not be read: {err}"))
            self._retire(1)
            return
        self._state, self._logits = state, logits
        generation.start(self.tokenizer, self.device)
        self._running.append(generation)

    def _step_safely(self) -> None:
        try:
            self._step()
        except Exception as err:  # a bug or out of memory: fail the requests, keep serving
            log.exception("generation step failed")
            for generation in self._running:
                generation.deliver(("error", f"generation failed: {err}"))
            self._leave(list(self._running))

    def _step(self) -> None:
        next_ids, failed = self._choose(self._logits)
        ids = next_ids.tolist()
        self._check_ids(ids, failed)
        for generation, message in failed.items():
            log.warning("a generation failed alone: %s", message)
            generation.deliver(("error", message))
        offset, finished = 0, list(failed)
        for generation in self._running:
            num = generation.settings.num
            if generation.seen is not None and generation not in failed:
                rows = torch.arange(num, device=generation.seen.device)
                generation.seen[rows, next_ids[offset : offset + num]] = True
            if generation not in failed and generation.advance(ids[offset : offset + num]):
                finished.append(generation)
            offset += num
        keep = self._leave(finished, apply=False)
        if keep is not None:
            next_ids = next_ids.index_select(0, keep)
            self._state = self.rows.select(self._state, keep)
        if self._running:
            self._logits, self._state = self.rows.step(next_ids, self._state)

    def _leave(self, leaving: list[Generation], apply: bool = True) -> torch.Tensor | None:
        """Remove generations' rows; -> the kept row index (None when nothing left)."""
        if not leaving:
            return None
        gone = {id(g) for g in leaving}
        keep, offset = [], 0
        for generation in self._running:
            num = generation.settings.num
            if id(generation) not in gone:
                keep.extend(range(offset, offset + num))
            offset += num
        self._running = [g for g in self._running if id(g) not in gone]
        self._retire(len(leaving))
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        if apply and self._running:
            self._state = self.rows.select(self._state, index)
            self._logits = self._logits.index_select(0, index)
        return index

    def _retire(self, count: int) -> None:
        with self._cond:
            self._active_count -= count

    def _choose(self, logits: torch.Tensor) -> tuple[torch.Tensor, dict[Generation, str]]:
        """Next id per row, and the generations whose rows could not be drawn (with why).
        Each sampling group of rows is filtered and drawn together; every operation works
        row by row, so one request's bad row cannot change another's draw."""
        logits = self._penalized(logits)
        if self.bias is not None:
            logits = logits + self.bias
        groups: dict[tuple, list[tuple[Generation, int]]] = {}
        offset = 0
        for generation in self._running:
            groups.setdefault(generation.sampling_group, []).append((generation, offset))
            offset += generation.settings.num
        failed: dict[Generation, str] = {}
        for key, members in groups.items():
            for generation, _ in members:  # drawn once, whatever happens below
                generation.uniforms = None if key[0] else generation.next_uniforms()
        if len(groups) == 1:  # the usual case: every row in one draw, no gathering
            (key, members), = groups.items()
            return self._draw(logits, key, members, failed), failed
        chosen = torch.empty(logits.size(0), dtype=torch.long, device=logits.device)
        for key, members in groups.items():
            rows = torch.tensor([o + i for g, o in members for i in range(g.settings.num)],
                                dtype=torch.long, device=logits.device)
            chosen[rows] = self._draw(logits.index_select(0, rows), key, members, failed)
        return chosen, failed

    def _penalized(self, logits: torch.Tensor) -> torch.Tensor:
        """Each generation's repetition penalty on its own rows (as sampling.generate_ids)."""
        offset, copied = 0, False
        for generation in self._running:
            num = generation.settings.num
            if generation.seen is not None:
                if not copied:
                    logits, copied = logits.clone(), True
                logits[offset : offset + num] = penalize_repetition(
                    logits[offset : offset + num], generation.seen,
                    generation.settings.repetition_penalty)
            offset += num
        return logits

    def _draw(self, logits: torch.Tensor, key: tuple, members: list, failed: dict) -> torch.Tensor:
        """One group's ids; a generation whose draw raises is marked failed (drawn alone with
        its own random numbers to find it) and the rest are kept."""
        generations = [g for g, _ in members]
        try:
            ids = _sample_group(logits, key, generations)
        except Exception as err:
            if len(members) == 1:
                failed[generations[0]] = f"generation failed: {err}"
                return torch.zeros(logits.size(0), dtype=torch.long, device=logits.device)
            log.exception("sampling a group failed; drawing its generations one by one")
            # the same random numbers (drawn in _choose), so the healthy ones are unchanged
            parts = logits.split([g.settings.num for g in generations])
            return torch.cat([self._draw(part, key, [member], failed)
                              for part, member in zip(parts, members)])
        return ids

    def _check_ids(self, ids: list[int], failed: dict) -> None:
        """A row whose probabilities were not finite draws an id past the vocabulary: its
        generation fails (and its rows leave before the next step reads them)."""
        if max(ids) < self.net.vocab_size:  # the usual case, at the cost of one max()
            return
        offset = 0
        for generation in self._running:
            num = generation.settings.num
            if max(ids[offset : offset + num]) >= self.net.vocab_size:
                failed.setdefault(generation, "generation failed: the probabilities were not "
                                              "finite (a setting out of range?)")
            offset += num


def _sample_group(logits: torch.Tensor, key: tuple, generations: list[Generation]) -> torch.Tensor:
    greedy, top_k, top_p = key
    if greedy:
        return logits.argmax(dim=-1)
    temperatures = [g.settings.temperature for g in generations for _ in range(g.settings.num)]
    if any(t != 1.0 for t in temperatures):
        logits = logits / torch.tensor(temperatures, device=logits.device).unsqueeze(1)
    probs = torch.softmax(top_p_filter(top_k_filter(logits, top_k), top_p), dim=-1)
    uniform = torch.tensor([u for g in generations for u in g.uniforms],
                           dtype=probs.dtype, device=probs.device).unsqueeze(1)
    return invert_cdf(probs, uniform)
