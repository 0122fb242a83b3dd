"""OpenAI-style completions on `chargen serve`: POST /v1/completions and GET /v1/models in the
request, response, streaming and error shapes of the OpenAI API, so that its clients (the
`openai` Python package, tools built on it, curl recipes) talk to a chargen run.

A request's prompts (one, or a list) times `n` become the rows of one generation, each row
with its own prompt, stepped with everyone else's by the server's batcher (the one generation
loop). chargen's own controls come as extra fields: top_k, repetition_penalty, unknown.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .batcher import Busy
from .config import SampleConfig, ServeLimits
from .errors import ChargenError, ConfigError
from .generate.engine import Generation
from .http_events import (
    STREAM_GATHER,
    GenerationStream,
    HTTPProblem,
    as_field_names,
    gather_texts,
    next_events,
)

# OpenAI fields chargen has no counterpart for: refused when set to anything but their default.
UNSUPPORTED = {"echo": False, "logprobs": None, "suffix": None, "best_of": None,
               "presence_penalty": 0.0, "frequency_penalty": 0.0, "logit_bias": None}


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None  # one run is served: any name reaches it
    prompt: str | list[str] = ""
    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: str | list[str] | None = Field(None)
    stream: bool = False
    seed: int | None = None
    user: str | None = None
    stream_options: dict | None = None
    # chargen's own, sent by OpenAI clients as extra fields
    top_k: int = 0
    repetition_penalty: float = 1.0
    unknown: Literal["error", "replace", "skip"] = "error"
    # OpenAI's that chargen cannot honour (UNSUPPORTED)
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    best_of: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict | None = None


def openai_error(status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


class _Refused(HTTPProblem):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(status, message)
        self.param = param


def add_openai_routes(app: FastAPI, model, limits: ServeLimits) -> None:
    name = Path(model.run.path).name
    created = int(Path(model.run.path).stat().st_mtime)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model_card(name, created)]}

    @app.get("/v1/models/{model_id}")
    async def one_model(model_id: str):
        if model_id != name:
            return openai_error(404, f"The model '{model_id}' does not exist; this server has "
                                     f"'{name}'", param="model", code="model_not_found")
        return _model_card(name, created)

    @app.post("/v1/completions", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": CompletionRequest.model_json_schema()}}}})
    async def completions(request: Request):
        try:
            body = await _read(request)
            primes, settings = _settings(body, limits, model)
            prompts = [model.prompt_ids(prime, body.unknown) for prime in primes]
        except _Refused as err:
            return openai_error(err.status, str(err), param=err.param)
        except ChargenError as err:
            return openai_error(400, str(err))
        rows = [prompt for prompt in prompts for _ in range(body.n)]
        answer = _Answer(name, body, sum(len(p) for p in prompts))
        return await _run(request.app.state, rows if len(rows) > 1 else rows[0], settings,
                          answer)


def _model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "chargen"}


async def _read(request: Request) -> CompletionRequest:
    try:
        return CompletionRequest.model_validate(json.loads(await request.body() or b"{}"))
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(part) for part in first.get("loc", ()))
        raise _Refused(400, f"{param or 'body'}: {first.get('msg', 'invalid')}", param) from None
    except ValueError as err:
        raise _Refused(400, f"the body is not JSON ({err})") from None


def _settings(body: CompletionRequest, limits: ServeLimits, model) -> tuple[list[str], SampleConfig]:
    for field, default in UNSUPPORTED.items():
        allowed = (default, 1) if field == "best_of" else (default,)  # best_of 1: the default
        if getattr(body, field) not in allowed:
            raise _Refused(400, f"{field} is not supported by chargen (leave it out)", field)
    primes = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not primes:
        raise _Refused(400, "prompt: give a text, or a list of texts", "prompt")
    if any(len(prime) > limits.max_prompt for prime in primes):
        raise _Refused(413, f"a prompt is over this server's maximum of {limits.max_prompt:,} "
                            "characters; shorten it", "prompt")
    length = 16 if body.max_tokens is None else body.max_tokens
    if length > limits.max_length:
        raise _Refused(400, f"max_tokens {length} is over this server's maximum of "
                            f"{limits.max_length}", "max_tokens")
    if body.n < 1 or len(primes) * body.n > limits.max_num:
        raise _Refused(400, f"n x prompts must be from 1 to this server's maximum of "
                            f"{limits.max_num} completions per request", "n")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > 4:
        raise _Refused(400, "stop: at most 4 sequences", "stop")
    if not all(primes):  # an empty prompt: a random training slice, as /generate does
        randoms = model.random_primes(len(primes), body.seed)
        primes = [prime or random for prime, random in zip(primes, randoms)]
    try:
        settings = SampleConfig(length=length, temperature=body.temperature, top_p=body.top_p,
                                top_k=body.top_k, num=len(primes) * body.n, seed=body.seed,
                                stop=tuple(stops), unknown=body.unknown,
                                repetition_penalty=body.repetition_penalty).validate()
    except ConfigError as err:
        raise _Refused(400, as_field_names(str(err))) from None
    return primes, settings


class _Answer:
    """The response's shape: one choice per row, its text, why it ended, the usage."""

    def __init__(self, name: str, body: CompletionRequest, prompt_tokens: int):
        self.name, self.body, self.prompt_tokens = name, body, prompt_tokens
        self.id, self.created = f"cmpl-{secrets.token_hex(12)}", int(time.time())

    def envelope(self, choices: list[dict], usage: dict | None = None) -> dict:
        answer = {"id": self.id, "object": "text_completion", "created": self.created,
                  "model": self.name, "choices": choices}
        if usage is not None:
            answer["usage"] = usage
        return answer

    def usage(self, timing: dict, rows: int) -> dict:
        completion = int(timing.get("tokens", 0)) * rows
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}


def _choice(index: int, text: str, finish: str | None) -> dict:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}


def _finish_reasons(timing: dict, rows: int) -> list[str]:
    stopped = timing.get("stopped") or [False] * rows
    return ["stop" if done else "length" for done in stopped]


async def _run(state, prompt, settings: SampleConfig, answer: _Answer):
    events: asyncio.Queue = asyncio.Queue()
    generation = Generation(prompt, settings, lambda event: state.mailbox.post(events, event))
    if settings.length == 0:
        generation.deliver = events.put_nowait
        generation.finish()
    else:
        try:
            state.batcher.submit(generation)
        except Busy as err:
            return openai_error(503, str(err), "server_error", headers={"Retry-After": "1"})
    if answer.body.stream:
        return GenerationStream(_stream(events, settings.num, answer),
                                lambda: state.batcher.cancel(generation))
    try:
        return await _collect(events, settings.num, answer)
    finally:
        state.batcher.cancel(generation)


async def _collect(events: asyncio.Queue, rows: int, answer: _Answer):
    kind, payload, texts = await gather_texts(events, rows)
    if kind == "error":
        return openai_error(500, payload, "server_error")
    reasons = _finish_reasons(payload, rows)
    choices = [_choice(i, text, reasons[i]) for i, text in enumerate(texts)]
    return answer.envelope(choices, answer.usage(payload, rows))


def _data(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _stream(events: asyncio.Queue, rows: int, answer: _Answer):
    """OpenAI's stream: data chunks of text per choice, a last chunk per choice with its
    finish_reason, then data: [DONE]."""
    while True:
        merged: dict[int, list[str]] = {}
        done = None
        for kind, payload in await next_events(events):
            if kind == "pieces":
                for row, piece in enumerate(payload):
                    merged.setdefault(row, []).append(piece)
            elif kind == "error":
                yield _data({"error": {"message": payload, "type": "server_error",
                                       "param": None, "code": None}})
                return
            else:
                done = payload
        chunks = [_data(answer.envelope([_choice(row, "".join(pieces), None)]))
                  for row, pieces in merged.items() if any(pieces)]
        if done is not None:
            reasons = _finish_reasons(done, rows)
            chunks += [_data(answer.envelope([_choice(row, "", reasons[row])])) for row in range(rows)]
            options = answer.body.stream_options or {}
            if options.get("include_usage"):
                chunks.append(_data(answer.envelope([], answer.usage(done, rows))))
            chunks.append("data: [DONE]\n\n")
        yield "".join(chunks)
        if done is not None:
            return
        await asyncio.sleep(STREAM_GATHER)
