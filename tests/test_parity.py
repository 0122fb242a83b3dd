"""One generation loop, every consumer: for each kind of run, a seeded and a greedy request give
the Python API's text through the CLI, interactive mode, the server (JSON and stream), the ONNX
export and the samples shown while training (fp32)."""

import io
import json
from pathlib import Path

import httpx
import pytest
from conftest import make_text, tiny_settings
from live_server import LiveServer
from test_serve import WAIT, _streamed

from chargen import api
from chargen.cli import main
from chargen.config import SampleConfig
from chargen.interactive import Session
from chargen.serve import ServeLimits

KINDS = {
    "char stream": {},
    "byte": {"tokenizer": "byte"},
    "word": {"tokenizer": "word"},
    "tutorial-B window": {"batching": "window", "window": 6, "input_encoding": "scalar"},
    "documents": {"batching": "documents", "hidden_size": 48},
}
REQUESTS = {
    "seeded": {"temperature": 0.8, "seed": 5, "top_p": 0.95, "repetition_penalty": 1.2},
    "greedy": {"temperature": 0},
}
PRIME, LENGTH = "the quick ", 40


@pytest.fixture(scope="module", params=list(KINDS))
def kind_run(request, tmp_path_factory) -> tuple[Path, api.LanguageModel]:
    base = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    corpus = base / "corpus.txt"
    corpus.write_text(make_text(4000, seed=3), encoding="utf-8")
    settings = tiny_settings(max_steps=12, eval_every=6, sample_length=30, seed=11,
                             **KINDS[request.param])
    run = api.train(str(corpus), str(base / "run"), quiet=True, **settings).run_dir
    return run, api.load(str(run), device="cpu")


def _expected(model, request: dict) -> str:
    [text] = model.sample(PRIME, length=LENGTH, precision="fp32", **request)
    assert text  # a request that makes no text would prove nothing
    return text


def _flags(request: dict) -> list[str]:
    return [part for key, value in request.items()
            for part in (f"--{key.replace('_', '-')}", str(value))]


@pytest.mark.parametrize("name", list(REQUESTS))
def test_the_cli_and_interactive_mode_give_the_api_text(kind_run, name, capsys):
    run, model = kind_run
    request, expected = REQUESTS[name], _expected(model, REQUESTS[name])
    assert main(["sample", str(run), "--prime", PRIME, "--length", str(LENGTH),
                 "--precision", "fp32", *_flags(request)]) == 0
    assert capsys.readouterr().out == PRIME + expected + "\n"
    out = io.StringIO()

    def end_of_input(_):
        raise EOFError

    settings = SampleConfig(length=LENGTH, precision="fp32", **request)
    Session(model, settings, out=out, err=io.StringIO()).run(PRIME, read_line=end_of_input)
    assert out.getvalue() == PRIME + expected + "\n\n"


def test_the_server_gives_the_api_text_as_json_and_as_a_stream(kind_run):
    _, model = kind_run
    with LiveServer(model, ServeLimits(precision="fp32")) as live, \
            httpx.Client(base_url=live.url, timeout=WAIT) as http:
        for request in REQUESTS.values():
            body = {"prime": PRIME, "length": LENGTH, **request}
            expected = _expected(model, request)
            assert http.post("/generate", json=body).json()["texts"] == [expected]
            streamed, _ = _streamed(http, **body)
            assert streamed == [expected]


def test_the_onnx_export_gives_the_api_text(kind_run, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from chargen.export import export_run
    from chargen.onnx_sampler import load_export

    run, model = kind_run
    exported = load_export(export_run(str(run), str(tmp_path / "export")))
    for request in REQUESTS.values():
        assert exported.sample(PRIME, length=LENGTH, **request) == [_expected(model, request)]


def test_the_samples_shown_while_training_are_the_api_text(kind_run):
    run, _ = kind_run
    last = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()][-1]
    model = api.load(str(run), which="last", device="cpu")
    [text] = model.sample(last["prime"], length=30, temperature=last["temperature"], seed=11,
                          precision="fp32")
    assert last["text"] == text


def test_a_prime_per_sample_gives_each_sample_its_own_prime_s_text(kind_run):
    """Several primes in one batch (what `chargen sample --num N` does without --prime): each
    sample is what its prime gives alone, repetition penalty included."""
    _, model = kind_run
    primes = ["the quick ", "a lazy dog ", "seven wizards "]
    request = {"length": LENGTH, "precision": "fp32", "temperature": 0, "repetition_penalty": 1.3}
    together = model.sample(primes, num=3, **request)
    assert together == [model.sample(prime, **request)[0] for prime in primes]


def test_without_a_prime_each_sample_starts_from_its_own_slice(kind_run):
    _, model = kind_run
    primes = model.random_primes(3, seed=4)
    assert primes[0] == model.random_prime(4)
    if not model.document_unit:  # a document run's samples all start at [start]
        assert len(set(primes)) == 3
    request = {"num": 3, "length": 20, "seed": 4, "precision": "fp32"}
    expected = model.sample(primes, **request) if not model.document_unit else \
        model.sample("", **request)
    assert model.sample(**request) == expected
