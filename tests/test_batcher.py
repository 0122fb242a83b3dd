
"""The dynamic batcher on its own: batched generations give exactly what each gives alone."""

import queue
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from chargen.batcher import Batcher, Busy
from chargen.config import ModelConfig, SampleConfig
from chargen.config import SampleConfig as Settings
from chargen.generate.engine import Generation
from chargen.generate.sample import generate_text
from chargen.model import RNNLanguageModel
from chargen.tokenizer import CharTokenizer

TEXT = "the quick brown fox jumps over a lazy dog.\n"


def _model(cell: str, layers: int):
    torch.manual_seed(0)
    tokenizer = CharTokenizer.fit(TEXT)
    config = ModelConfig(cell=cell, hidden_size=24, num_layers=layers, embedding_dim=8, dropout=0.0)
    net = RNNLanguageModel(config, tokenizer.vocab_size).eval()
    return SimpleNamespace(net=net, tokenizer=tokenizer, device=torch.device("cpu"),
                           config=SimpleNamespace(model=config))


def _alone(model, prime: str, settings: Settings) -> list[str]:
    """What `chargen sample` gives for these settings."""
    config = SampleConfig(length=settings.length, temperature=settings.temperature,
                          top_k=settings.top_k, top_p=settings.top_p, num=settings.num,
                          seed=settings.seed, stop=settings.stop, precision="fp32",
                          repetition_penalty=settings.repetition_penalty)
    prompt = torch.from_numpy(model.tokenizer.encode(prime).astype("int64"))
    texts = [""] * settings.num
    for pieces in generate_text(model.net, model.tokenizer, prompt, config):
        texts = [text + piece for text, piece in zip(texts, pieces)]
    return texts


def _submit(batcher, model, prime: str, settings: Settings):
    outbox = queue.Queue()
    prompt = torch.from_numpy(model.tokenizer.encode(prime).astype("int64"))
    generation = Generation(prompt, settings, outbox.put)
    batcher.submit(generation)
    return generation, outbox


def _collect(outbox, num: int) -> list[str]:
    texts = [""] * num
    while True:
        kind, payload = outbox.get(timeout=60)
        if kind == "done":
            return texts
        assert kind == "pieces", payload
        texts = [text + piece for text, piece in zip(texts, payload)]


REQUESTS = [
    ("the ", Settings(length=30, temperature=0.8, seed=1)),
    ("a lazy", Settings(length=45, temperature=1.3, seed=2, num=3)),
    ("fox", Settings(length=20, top_k=5, seed=3)),
    ("dog", Settings(length=25, top_p=0.7, temperature=0.9, seed=4, num=2)),
    ("quick", Settings(length=15, temperature=0)),
    ("over ", Settings(length=40, seed=5, stop=("o",))),
    ("the lazy", Settings(length=35, seed=6, num=2, repetition_penalty=1.5)),
    ("jumps", Settings(length=20, temperature=0, repetition_penalty=0.7)),
]


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1), ("gru", 2)])
def test_batched_generations_equal_each_alone(cell, layers):
    model = _model(cell, layers)
    batcher = Batcher(model, max_active=8, queue_size=8, precision="fp32")
    try:
        submitted = [(_submit(batcher, model, prime, s), prime, s) for prime, s in REQUESTS]
        for (_, outbox), prime, settings in submitted:
            assert _collect(outbox, settings.num) == _alone(model, prime, settings), settings
    finally:
        batcher.close()
    assert batcher.counts() == {"active": 0, "queued": 0}


def test_stop_sequences_end_a_generation_early():
    model = _model("lstm", 1)
    batcher = Batcher(model, max_active=2, queue_size=0, precision="fp32")
    try:
        _, outbox = _submit(batcher, model, "the ", Settings(length=500, seed=5, stop=("o",)))
        text = _collect(outbox, 1)[0]
    finally:
        batcher.close()
    assert "o" not in text and len(text) < 500


def test_a_full_queue_refuses_and_a_cancelled_generation_leaves():
    model = _model("lstm", 1)
    batcher = Batcher(model, max_active=1, queue_size=1, precision="fp32")
    try:
        long_one, outbox = _submit(batcher, model, "the ", Settings(length=10**7, seed=0))
        assert outbox.get(timeout=60)[0] == "pieces"  # it is running
        waiting, waiting_box = _submit(batcher, model, "dog", Settings(length=5, seed=1))
        with pytest.raises(Busy, match="busy"):
            _submit(batcher, model, "fox", Settings(length=5, seed=2))
        batcher.cancel(long_one)
        assert len(_collect(waiting_box, 1)[0]) == 5  # the waiting one got the place
    finally:
        batcher.close()
    assert batcher.counts() == {"active": 0, "queued": 0}


HEALTHY = [("the ", Settings(length=40, temperature=0.6 + 0.1 * i, seed=i, num=1 + i % 2))
           for i in range(8)]


def _error_of(outbox) -> str:
    while True:
        kind, payload = outbox.get(timeout=60)
        if kind != "pieces":
            assert kind == "error", (kind, payload)
            return payload


def _fails_alone_among_eight(model, bad: Settings) -> str:
    """Submit `bad` between eight healthy generations; check each healthy one gives its solo
    text; -> the bad one's error."""
    batcher = Batcher(model, max_active=16, queue_size=16, precision="fp32")
    try:
        healthy = [_submit(batcher, model, prime, s)[1] for prime, s in HEALTHY[:4]]
        _, failing = _submit(batcher, model, "the ", bad)
        healthy += [_submit(batcher, model, prime, s)[1] for prime, s in HEALTHY[4:]]
        error = _error_of(failing)
        for outbox, (prime, settings) in zip(healthy, HEALTHY):
            assert _collect(outbox, settings.num) == _alone(model, prime, settings)
    finally:
        batcher.close()
    assert batcher.counts() == {"active": 0, "queued": 0}
    return error


@pytest.mark.parametrize("poison", [float("nan"), 1e-45])
def test_a_poisoned_generation_fails_alone(poison):
    """Settings the server's validation would refuse, pushed straight into a batch: that row's
    probabilities are not finite; its request fails, the eight around it are untouched."""
    bad = Settings(length=40, temperature=poison)
    assert "not finite" in _fails_alone_among_eight(_model("lstm", 2), bad)


def test_a_generation_whose_draw_raises_fails_alone(monkeypatch):
    """An exception while drawing a group: its generations are drawn one by one with the
    same random numbers, and only the one that raises fails."""
    from chargen.generate.logits import TorchOps

    invert = TorchOps.invert_cdf
    doomed = set(np.random.default_rng(666).random((40, 1), dtype=np.float32)[:, 0].tolist())

    def fragile(ops, probs, uniforms):
        if doomed & set(uniforms.tolist()):  # the seed-666 request's random numbers
            raise RuntimeError("boom")
        return invert(ops, probs, uniforms)

    monkeypatch.setattr(TorchOps, "invert_cdf", fragile)
    assert "boom" in _fails_alone_among_eight(_model("gru", 1), Settings(length=40, seed=666))


def test_a_poisoned_generation_with_a_repetition_penalty_fails_alone():
    bad = Settings(length=40, temperature=float("nan"), repetition_penalty=1.3)
    assert "not finite" in _fails_alone_among_eight(_model("lstm", 1), bad)
