"""Dynamic batching for the server: one worker thread owns the model and the one generation
loop (generate/engine.py); every step runs one decoder step over the rows of all the
generations in progress (for a window model, one forward pass over every row's window).

A generation (one request) joins with its prompt consumed and its `num` state rows appended;
it leaves when it has its length, meets its stop sequences, or its client goes away. Each
request draws from its own seeded random numbers, so a seeded request gives the same text
alone or batched with others (and the same as `chargen sample` with that seed).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import torch

from .decode import Decoder, decode_dtype
from .errors import Busy
from .generate.engine import Engine, Generation
from .generate.logits import TorchOps
from .generate.readers import Rereading, StateReader, initial_windows

log = logging.getLogger("chargen")


class Batcher:
    """submit() generations from any thread; one worker thread steps them all together.
    At most `max_active` run at once and `queue_size` wait; beyond that submit() raises Busy."""

    def __init__(self, model, max_active: int, queue_size: int, precision: str = "auto"):
        self.net, self.device = model.net, model.device
        self.max_active, self.queue_size = max_active, queue_size
        self.decoder = None
        if not self.net.kind.windowed:  # one decoder (weights packed once) for every row
            dtype = decode_dtype(self.device, max_active, model.config.model.hidden_size, precision)
            self.decoder = Decoder(self.net, dtype, rows=max_active)
        self.engine = Engine(TorchOps(self.device), self.net.kind, model.tokenizer)
        self._cond = threading.Condition()
        self._waiting: deque[Generation] = deque()
        self._active_count = 0
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
        engine = self.engine  # touched by this thread only
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._stopping or self._waiting or engine.running):
                        self._cond.wait()
                    if self._stopping:
                        return
                    joining = self._take_waiting()
                for generation in joining:
                    self._join(generation)
                self._settle(engine.leave, [g for g in engine.running if g.cancelled])
                if engine.running:
                    self._settle(self._step_safely)

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
            prompt = generation.prompt  # one for every row, or one per row
            prompt = ([p.to(self.device) for p in prompt] if isinstance(prompt, list)
                      else prompt.to(self.device))
            if self.decoder is None:
                kind = self.net.kind
                windows = initial_windows(prompt, generation.num, kind.window, kind.pad_id)
                reader = Rereading(self.net, windows)
            else:
                reader = StateReader(self.net, self.decoder, prompt, generation.num)
        except Exception as err:  # e.g. out of memory on a huge prompt: only this request fails
            log.exception("prompt failed")
            generation.deliver(("error", f"the prompt could not be read: {err}"))
            self._retire(1)
            return
        self.engine.join(generation, reader)
        if generation not in self.engine.running:  # over at once (length 0)
            self._retire(1)

    def _settle(self, action, *args) -> None:
        """Run an engine action and release the places of the generations it ended."""
        before = len(self.engine.running)
        action(*args)
        self._retire(before - len(self.engine.running))

    def _step_safely(self) -> None:
        try:
            self.engine.step()
        except Exception as err:  # a bug or out of memory: fail the requests, keep serving
            log.exception("generation step failed")
            for generation in self.engine.running:
                generation.deliver(("error", f"generation failed: {err}"))
            self.engine.leave(list(self.engine.running))

    def _retire(self, count: int) -> None:
        with self._cond:
            self._active_count -= count
