"""What the HTTP endpoints share: the mailbox that carries the generation thread's events to the
event loop, the streamed response that drops its generation however it ends, the problem a
request can have (a status and a message)."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

from fastapi.responses import StreamingResponse

# Seconds a stream waits after a write so that the next carries several steps' pieces: at 32
# streams, one write per step per client cost the two cores more than the model did.
STREAM_GATHER = 0.02


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class GenerationStream(StreamingResponse):
    """Server-sent events; the generation is dropped however the response ends (a client
    that disconnects makes the next write fail, which lands in `finally`)."""

    def __init__(self, content, on_close):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


class Mailbox:
    """Carries the worker thread's events to the event loop's queues with at most one loop
    wake-up per batch of events (call_soon_threadsafe per event would wake the loop once per
    generation per step)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.lock = loop, threading.Lock()
        self.items: list[tuple[asyncio.Queue, tuple]] = []

    def post(self, queue: asyncio.Queue, event: tuple) -> None:
        with self.lock:
            self.items.append((queue, event))
            wake = len(self.items) == 1
        if wake:
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self.lock:
            items, self.items = self.items, []
        for queue, event in items:
            queue.put_nowait(event)


async def next_events(events: asyncio.Queue) -> list:
    """Wait for one event, then take whatever else is ready (one write per batch of steps)."""
    batch = [await events.get()]
    while not events.empty():
        batch.append(events.get_nowait())
    return batch


async def gather_texts(events: asyncio.Queue, rows: int) -> tuple[str, Any, list[str]]:
    """A whole generation's texts, one per row: -> ("done", timing, texts) or
    ("error", message, the texts so far)."""
    texts: list[list[str]] = [[] for _ in range(rows)]
    while True:
        for kind, payload in await next_events(events):
            if kind == "pieces":
                for text, piece in zip(texts, payload):
                    text.append(piece)
            else:
                return kind, payload, ["".join(text) for text in texts]


def as_field_names(message: str) -> str:
    """The API's messages name CLI flags; over HTTP they name the request's fields."""
    message = message.replace("pass --unknown skip or --unknown replace",
                              'set "unknown" to "skip" or "replace"')
    return re.sub(r"--([a-z]+(?:-[a-z]+)*)", lambda m: m.group(1).replace("-", "_"), message)
