"""`chargen serve`: an HTTP server (FastAPI + uvicorn) over one loaded run.

POST /generate answers JSON, or server-sent events with "stream": true; GET /health,
GET /info, and GET / (the playground page). Requests are checked against ServeLimits and
handed to the Batcher, which steps every generation in progress together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .batcher import Batcher, Busy
from .config import SampleConfig, ServeLimits, check_whole
from .errors import ChargenError, ConfigError
from .generate.engine import Generation

log = logging.getLogger("chargen")
# Seconds a stream waits after a write so that the next carries several steps' pieces: at 32
# streams, one write per step per client cost the two cores more than the model did.
STREAM_GATHER = 0.02


class GenerateRequest(BaseModel):
    """The body's shape (types); ranges are checked by SampleConfig's validators, the same
    ones the CLI and the API use, before the request joins a batch."""

    model_config = ConfigDict(extra="forbid")

    prime: str | None = Field(None, description="text to continue; empty: a random training "
                                                "slice (a document run: a whole new unit)")
    length: int = 200
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num: int = 1
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=8)
    unknown: Literal["error", "replace", "skip"] = "error"
    repetition_penalty: float = 1.0
    beam: int = 0  # accepted so that the answer can say why it is not served
    stream: bool = False

    def sample_config(self) -> SampleConfig:
        """-> the request's settings, validated (ConfigError names the flag)."""
        return SampleConfig(length=self.length, temperature=self.temperature, top_k=self.top_k,
                            top_p=self.top_p, num=self.num, seed=self.seed, stop=tuple(self.stop),
                            unknown=self.unknown, repetition_penalty=self.repetition_penalty,
                            beam=self.beam).validate()


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _check_limits(body: GenerateRequest, limits: ServeLimits) -> None:
    if body.length > limits.max_length:
        raise HTTPProblem(400, f"length {body.length} is over this server's maximum of "
                               f"{limits.max_length}; ask for fewer tokens")
    if body.num > limits.max_num:
        raise HTTPProblem(400, f"num {body.num} is over this server's maximum of {limits.max_num}"
                               " samples per request")
    if body.prime is not None and len(body.prime) > limits.max_prompt:
        raise HTTPProblem(413, f"the prompt has {len(body.prime):,} characters, over this "
                               f"server's maximum of {limits.max_prompt:,}; shorten it")


def _as_field_names(message: str) -> str:
    """The API's messages name CLI flags; over HTTP they name the request's fields."""
    message = message.replace("pass --unknown skip or --unknown replace",
                              'set "unknown" to "skip" or "replace"')
    return re.sub(r"--([a-z]+(?:-[a-z]+)*)", lambda m: m.group(1).replace("-", "_"), message)


async def _read_body(request: Request) -> GenerateRequest:
    """The JSON body, whatever the Content-Type says (curl -d sends a form type)."""
    try:
        return GenerateRequest.model_validate(json.loads(await request.body() or b"{}"))
    except ValueError as err:
        if isinstance(err, ValidationError):
            raise HTTPProblem(422, _first_problem(err.errors())) from None
        raise HTTPProblem(400, f"the body is not JSON ({err}); send a JSON object") from None


def _checked(body: GenerateRequest) -> SampleConfig:
    """The settings of a body whose every value the sampler can use."""
    try:
        config = body.sample_config()
    except ConfigError as err:
        raise HTTPProblem(422, _as_field_names(str(err))) from None
    if config.beam:
        raise HTTPProblem(422, "beam is not served over HTTP (a beam search returns its text at "
                               "the end, not step by step); use chargen sample --beam or the "
                               "Python API")
    return config


def _first_problem(errors) -> str:
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where or 'body'}: {first.get('msg', 'invalid')}"


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class _GenerationStream(StreamingResponse):
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


def create_app(model, limits: ServeLimits | None = None) -> FastAPI:
    """The ASGI app serving `model` (a chargen.api.LanguageModel)."""
    limits = (limits or ServeLimits()).validate()
    info = _model_info(model, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = Batcher(model, limits.max_active, limits.queue_size, limits.precision)
        app.state.mailbox = _Mailbox(asyncio.get_running_loop())
        try:
            yield
        finally:
            app.state.batcher.close()

    app = FastAPI(title="chargen", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health(request: Request):
        return {"status": "ok", **request.app.state.batcher.counts()}

    @app.get("/info")
    async def model_info():
        return info

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return resources.files("chargen").joinpath("static/playground.html").read_text("utf-8")

    # The body is read by hand (any Content-Type, as curl -d sends); its schema is published
    # for clients and for the fuzz tests that generate bodies from it.
    @app.post("/generate", openapi_extra={"requestBody": {"required": False, "content": {
        "application/json": {"schema": GenerateRequest.model_json_schema()}}}})
    async def generate(request: Request):
        try:
            body = await _read_body(request)
            settings = _checked(body)
            _check_limits(body, limits)
            prime = body.prime or model.random_prime(body.seed)  # a document run's: ""
            prompt = model.prompt_ids(prime, body.unknown)
        except HTTPProblem as err:
            return _error(err.status, str(err))
        except ChargenError as err:
            return _error(400, _as_field_names(str(err)))
        return await _start(request.app.state.batcher, request.app.state.mailbox, body, settings,
                            prime, prompt)

    return app


class _Mailbox:
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


async def _start(batcher: Batcher, mailbox: _Mailbox, body: GenerateRequest, settings: SampleConfig,
                 prime: str, prompt):
    events: asyncio.Queue = asyncio.Queue()
    generation = Generation(prompt, settings, lambda event: mailbox.post(events, event))
    if body.length == 0:
        generation.deliver = events.put_nowait
        generation.finish()
    else:
        try:
            batcher.submit(generation)
        except Busy as err:
            return _error(503, str(err), {"Retry-After": "1"})
    if body.stream:
        return _GenerationStream(_stream(events, prime), lambda: batcher.cancel(generation))
    try:
        return await _collect(events, prime, body.num)
    finally:
        batcher.cancel(generation)


async def _next_events(events: asyncio.Queue) -> list:
    """Wait for one event, then take whatever else is ready (one write per batch of steps)."""
    batch = [await events.get()]
    while not events.empty():
        batch.append(events.get_nowait())
    return batch


async def _stream(events: asyncio.Queue, prime: str):
    """SSE: a start event, text events, then done (with timing) or error. The pieces that
    arrived while the previous write was going out are merged per sample, so a slow client
    or a busy server gets fewer, longer events rather than a growing backlog."""
    yield _sse("start", {"prime": prime})
    while True:
        merged: dict[int, list[str]] = {}
        ending = None
        for kind, payload in await _next_events(events):
            if kind == "pieces":
                for sample, piece in enumerate(payload):
                    merged.setdefault(sample, []).append(piece)
            else:
                ending = _sse(kind, payload if kind == "done" else {"error": payload})
        chunks = [_sse("text", {"sample": sample, "text": "".join(pieces)})
                  for sample, pieces in merged.items() if any(pieces)]
        yield "".join(chunks + [ending or ""])
        if ending:
            return
        await asyncio.sleep(STREAM_GATHER)  # let a few steps' pieces gather into one write


async def _collect(events: asyncio.Queue, prime: str, num: int):
    texts: list[list[str]] = [[] for _ in range(num)]
    while True:
        for kind, payload in await _next_events(events):
            if kind == "pieces":
                for text, piece in zip(texts, payload):
                    text.append(piece)
            elif kind == "error":
                return _error(500, payload)
            else:
                return {"prime": prime, "texts": ["".join(text) for text in texts],
                        "timing": payload}


def _model_info(model, limits: ServeLimits) -> dict:
    from .api import run_info

    summary = run_info(str(model.run.path))
    best = summary.get("best_val")
    return {
        "run": summary["run"], "model": summary["config"]["model"],
        "tokenizer": model.tokenizer.kind, "vocabulary": summary["vocabulary"],
        "document_unit": model.document_unit,  # each sample one line, sentence or paragraph
        "parameters": summary["parameters"],
        "best_val": best if best is not None and math.isfinite(best) else None,
        "best_step": summary.get("best_step"), "steps": summary.get("steps"),
        "limits": asdict(limits),
    }


def serve(run: str, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None,
          which: str = "best", device: str = "cpu", threads: int | None = None) -> None:
    """Load `run` and serve it until interrupted."""
    import torch
    import uvicorn

    from .api import load

    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= 1024):
        raise ConfigError(f"--threads must be a whole number from 1 to 1024 (got {threads})")
    check_whole("port", port, limit=65535)
    # One core is left to the event loop: with every core in torch's pool, its spinning
    # threads starved the HTTP side (2 CPUs, 32 clients: 2,156 chars/s against 2,702).
    torch.set_num_threads(threads or max(1, torch.get_num_threads() - 1))
    listener = _listen(host, port)
    model = load(run, which=which, device=device)
    server = uvicorn.Server(uvicorn.Config(create_app(model, limits), log_level="warning"))
    bound_host, bound_port = listener.getsockname()[:2]
    log.info("serving %s on http://%s:%d (playground at /, API at POST /generate)", run,
             bound_host, bound_port)
    with listener:
        server.run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """Bind before loading the model, so a taken port is a one-line error at once."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except (OSError, OverflowError) as err:
        raise ChargenError(f"cannot listen on {host}:{port} ({err}); pick another --port or "
                           "--host") from None
    return listener
