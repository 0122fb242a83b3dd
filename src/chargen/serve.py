"""`chargen serve`: an HTTP server (FastAPI + uvicorn) over one loaded run.

POST /generate answers JSON, or server-sent events with "stream": true; GET /health,
GET /info, and GET / (the playground page). Requests are checked against ServeLimits and
handed to the Batcher, which steps every generation in progress together.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import socket
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .batcher import Batcher, Busy
from .config import SampleConfig, ServeLimits, check_whole
from .errors import ChargenError, ConfigError
from .generate.engine import Generation
from .http_events import (
    STREAM_GATHER,
    GenerationStream,
    HTTPProblem,
    Mailbox,
    as_field_names,
    gather_texts,
    next_events,
)
from .openai_api import add_openai_routes, openai_error

log = logging.getLogger("chargen")


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
        raise HTTPProblem(422, as_field_names(str(err))) from None
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


def create_app(model, limits: ServeLimits | None = None) -> FastAPI:
    """The ASGI app serving `model` (a chargen.api.LanguageModel)."""
    limits = (limits or ServeLimits()).validate()
    info = _model_info(model, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = Batcher(model, limits.max_active, limits.queue_size, limits.precision)
        app.state.mailbox = Mailbox(asyncio.get_running_loop())
        try:
            yield
        finally:
            app.state.batcher.close()

    app = FastAPI(title="chargen", lifespan=lifespan, docs_url=None, redoc_url=None)

    add_openai_routes(app, model, limits)
    if limits.api_key is not None:
        _require_key(app, limits.api_key)

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
            return _error(400, as_field_names(str(err)))
        return await _start(request.app.state.batcher, request.app.state.mailbox, body, settings,
                            prime, prompt)

    return app


async def _start(batcher: Batcher, mailbox: Mailbox, body: GenerateRequest, settings: SampleConfig,
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
        return GenerationStream(_stream(events, prime), lambda: batcher.cancel(generation))
    try:
        return await _collect(events, prime, body.num)
    finally:
        batcher.cancel(generation)


async def _stream(events: asyncio.Queue, prime: str):
    """SSE: a start event, text events, then done (with timing) or error. The pieces that
    arrived while the previous write was going out are merged per sample, so a slow client
    or a busy server gets fewer, longer events rather than a growing backlog."""
    yield _sse("start", {"prime": prime})
    while True:
        merged: dict[int, list[str]] = {}
        ending = None
        for kind, payload in await next_events(events):
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
    kind, payload, texts = await gather_texts(events, num)
    if kind == "error":
        return _error(500, payload)
    return {"prime": prime, "texts": texts, "timing": payload}


def _require_key(app: FastAPI, key: str) -> None:
    """Every endpoint but /health answers only a request that carries the key as a bearer
    token (compared in constant time); else 401, in the OpenAI error shape under /v1."""
    expected = f"Bearer {key}".encode()

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if request.url.path == "/health":
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return await call_next(request)
        message = ("a missing or wrong API key: send it as Authorization: Bearer KEY (the "
                   "server's --api-key)")
        if request.url.path.startswith("/v1/"):
            return openai_error(401, message, code="invalid_api_key")
        return _error(401, message)


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
        "limits": limits.shown(),
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
    limits = _with_key(limits or ServeLimits(), host)
    # One core is left to the event loop: with every core in torch's pool, its spinning
    # threads starved the HTTP side (2 CPUs, 32 clients: 2,156 chars/s against 2,702).
    torch.set_num_threads(threads or max(1, torch.get_num_threads() - 1))
    listener = _listen(host, port)
    model = load(run, which=which, device=device)
    server = uvicorn.Server(uvicorn.Config(create_app(model, limits), log_level="warning"))
    bound_host, bound_port = listener.getsockname()[:2]
    log.info("serving %s on http://%s:%d (playground at /, API at POST /generate and POST "
             "/v1/completions)", run,
             bound_host, bound_port)
    with listener:
        server.run(sockets=[listener])


def _with_key(limits: ServeLimits, host: str) -> ServeLimits:
    """The key from CHARGEN_API_KEY when none is given; a warning when the server is reachable
    from other machines without one."""
    if limits.api_key is None and os.environ.get("CHARGEN_API_KEY"):
        limits = replace(limits, api_key=os.environ["CHARGEN_API_KEY"])
    limits = limits.validate()
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if limits.api_key is None and not loopback:
        log.warning("serving on %s without an API key: anyone who can reach this machine can "
                    "use it (set --api-key or CHARGEN_API_KEY)", host)
    return limits


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
