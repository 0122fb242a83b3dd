"""Fuzzing the boundary: arbitrary values for every numeric flag of every command, and
arbitrary bodies for the HTTP API generated from its OpenAPI schema.

Whatever comes in, the answer is a success, or one line on stderr with a non-zero exit (a
4xx over HTTP) and nothing changed on disk: never a traceback, never a 500. The flags are
read from the parser itself, so a new flag is fuzzed without a change here. The number of
examples is bounded (settings below) so `make test` stays quick; the database is off, so
every run draws the same examples.
"""

import argparse
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import make_text
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chargen.cli import build_parser, main

EDGES = ["0", "-0", "1", "2", "-1", "0.5", "3.0", "1e39", "-1e39", "1e-45", "1e-300", "1e300",
         "1e400", "inf", "-inf", "nan", "NaN", str(2**63), str(2**64), str(10**23), "", "abc",
         " 7 ", "0x1f", "1_000", "--", "½", "10m", "1.5h", "-5s"]
VALUES = st.one_of(st.sampled_from(EDGES), st.integers(-(2**70), 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def numeric_flags(command: str) -> list[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.option_strings[-1] for action in commands.choices[command]._actions
                  if action.option_strings and action.type not in (None, str))


def fingerprint(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def answered_cleanly(capsys, argv: list[str]) -> int:
    """Run the CLI in this process (a traceback would fail the test by itself) and check
    that a failure is one line."""
    threads = torch.get_num_threads()
    try:
        code = main(argv)
    finally:
        torch.set_num_threads(threads)  # a fuzzed --threads must not slow the tests after it
    err = capsys.readouterr().err
    if code != 0:
        errors = [line for line in err.splitlines() if ": error:" in line]
        assert len(errors) == 1, err
        assert "Traceback" not in err
    return code


# Each example trains at most a couple of steps for at most a few seconds: the fuzzed flag
# comes last and overrides these (argparse keeps the last value given).
TRAIN_BASE = ["--hidden-size", "16", "--num-layers", "1", "--embedding-dim", "8", "--seq-len",
              "16", "--batch-size", "4", "--max-steps", "2", "--max-time", "3s", "--device",
              "cpu", "--precision", "fp32", "--no-auto", "--quiet", "--no-tensorboard",
              "--sample-every", "0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "corpus.txt"
    path.write_text(make_text(3000))
    return path


@pytest.fixture(autouse=True)
def small_memory(monkeypatch):
    """Valid but huge models are refused by the memory check rather than trained."""
    monkeypatch.setenv("CHARGEN_MAX_MEMORY", "512M")


@FUZZ
@given(flag=st.sampled_from(numeric_flags("train")), value=VALUES)
def test_train_numbers(capsys, corpus, tmp_path_factory, flag, value):
    out = tmp_path_factory.mktemp("run") / "run"
    code = answered_cleanly(capsys, ["train", str(corpus), "--out", str(out), *TRAIN_BASE,
                                     flag, value])
    if code != 0 and out.exists():  # training started, then stopped (a diverging loss): a
        assert (out / "config.json").exists()  # whole run directory, never a half-made one
        assert not list(out.glob(".*.tmp"))


def _small_enough(flag: str, value: str) -> bool:
    """Valid lengths and beams of millions would sample for minutes: not what is fuzzed."""
    try:
        number = float(value)
    except ValueError:
        return True
    return not (flag in ("--length", "--beam", "--num") and math.isfinite(number) and number > 64)


@FUZZ
@given(flag=st.sampled_from(numeric_flags("sample")), value=VALUES)
def test_sample_numbers(capsys, trained_run, flag, value):
    assume(_small_enough(flag, value))
    before = fingerprint(trained_run)
    answered_cleanly(capsys, ["sample", str(trained_run), "--length", "5", "--precision", "fp32",
                              flag, value])
    assert fingerprint(trained_run) == before


@FUZZ
@given(flag=st.sampled_from(numeric_flags("serve")), value=VALUES)
def test_serve_numbers(capsys, trained_run, monkeypatch, flag, value):
    """Valid settings start a server whose loop returns at once (uvicorn's run is replaced)."""
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    before = fingerprint(trained_run)
    port = [] if flag == "--port" else ["--port", "0"]
    answered_cleanly(capsys, ["serve", str(trained_run), *port, flag, value])
    assert fingerprint(trained_run) == before


# -- the HTTP API, from its own OpenAPI schema ------------------------------------------------
def _any_json():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.text(max_size=8),
                        st.floats(allow_nan=True, allow_infinity=True))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


EDGE_NUMBERS = [0, -1, 2, 1e39, 1e-45, 1e300, 2**64, float("inf"), float("nan")]


def _from_schema(schema: dict):
    """Values a JSON schema allows, for the flat shapes a request body uses (hypothesis-jsonschema
    would do this, but its releases lag hypothesis's internals)."""
    if "anyOf" in schema:
        return st.one_of([_from_schema(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return st.fixed_dictionaries({}, optional={name: _from_schema(field)
                                                   for name, field in schema["properties"].items()})
    if kind == "array":
        return st.lists(_from_schema(schema.get("items", {})), max_size=schema.get("maxItems", 4))
    return {"string": st.text(max_size=12), "integer": st.integers(-(2**70), 2**70),
            "number": st.floats(allow_nan=False, allow_infinity=False), "boolean": st.booleans(),
            "null": st.none()}.get(kind, _any_json())


def _bodies(schema: dict):
    """Bodies the schema allows, bodies with its field names and any values, and any JSON."""
    fields = st.fixed_dictionaries({}, optional={
        name: st.one_of(st.sampled_from(EDGE_NUMBERS), _any_json())
        for name in schema["properties"]})
    return st.one_of(_from_schema(schema), fields, _any_json())


@pytest.fixture(scope="module")
def fuzz_server(trained_run):
    pytest.importorskip("fastapi")
    import httpx
    from live_server import LiveServer

    from chargen import api
    from chargen.serve import ServeLimits

    model = api.load(str(trained_run), device="cpu")
    with LiveServer(model, ServeLimits(max_length=40, max_num=3, max_prompt=50,
                                       precision="fp32")) as live:
        published = httpx.get(live.url + "/openapi.json", timeout=60).json()
        body = published["paths"]["/generate"]["post"]["requestBody"]["content"]
        yield live, model, body["application/json"]["schema"]


def test_the_published_schema_names_every_field_of_a_request(fuzz_server):
    from chargen.serve import GenerateRequest

    assert set(fuzz_server[2]["properties"]) == set(GenerateRequest.model_fields)


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_body_is_answered_with_text_or_a_clear_4xx(fuzz_server, data):
    import httpx

    live, model, schema = fuzz_server
    body = data.draw(_bodies(schema))
    if isinstance(body, dict) and body.get("stream") is True:
        body["stream"] = False  # the stream's status is sent before the text: checked apart
    payload = json.dumps(body, allow_nan=True).encode()
    response = httpx.post(live.url + "/generate", content=payload, timeout=60)
    assert response.status_code in (200, 400, 413, 422, 503), response.text
    answer = response.json()
    if response.status_code == 200:
        assert len(answer["texts"]) == body.get("num", 1)
    else:
        assert isinstance(answer["error"], str) and "\n" not in answer["error"]
        assert "Traceback" not in answer["error"]


def test_after_the_fuzzing_the_server_still_answers_like_the_api(fuzz_server):
    import httpx

    live, model, _ = fuzz_server
    body = {"prime": "the ", "length": 30, "temperature": 0.8, "seed": 11}
    texts = httpx.post(live.url + "/generate", json=body, timeout=60).json()["texts"]
    assert texts == model.sample("the ", length=30, temperature=0.8, seed=11, precision="fp32")
