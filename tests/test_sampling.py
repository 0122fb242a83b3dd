import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chargen.config import ModelConfig, SampleConfig
from chargen.errors import ConfigError
from chargen.generate.engine import draw
from chargen.generate.logits import (
    TorchOps,
    banned_bias,
    invert_cdf,
    penalize_repetition,
    top_k_filter,
    top_p_filter,
)
from chargen.generate.sample import generate_ids
from chargen.model import RNNLanguageModel
from chargen.pieces import StopWatch

LOGITS = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))


def test_top_k_keeps_the_k_largest():
    kept = top_k_filter(LOGITS, 2)
    assert torch.isfinite(kept).tolist() == [[True, True, False, False]]
    assert torch.equal(top_k_filter(LOGITS, 0), LOGITS)


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert torch.isfinite(top_p_filter(LOGITS, 0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(LOGITS, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(top_p_filter(LOGITS, 0.76)).tolist() == [[True, True, True, False]]
    assert torch.equal(top_p_filter(LOGITS, 1.0), LOGITS)


def test_mask_and_greedy():
    bias = banned_bias(4, [0], LOGITS.device)
    assert bias.tolist() == [-math.inf, 0.0, 0.0, 0.0]
    assert banned_bias(4, [], LOGITS.device) is None
    assert TorchOps.greedy(LOGITS + bias).tolist() == [1]
    assert TorchOps.greedy(LOGITS).tolist() == [0]


def _draws(logits: torch.Tensor, temperature: float, seed: int = 0) -> torch.Tensor:
    uniforms = np.random.default_rng(seed).random(len(logits), dtype=np.float32)
    return draw(TorchOps(logits.device), logits, 0, 1.0, [temperature] * len(logits), uniforms)


def test_banned_ids_are_never_sampled():
    logits = torch.tensor([[5.0, 0.0, 0.0]]).repeat(500, 1)
    picks = _draws(logits + banned_bias(3, [0], logits.device), 2.0)
    assert 0 not in picks.tolist()


def test_temperature_sharpens_and_flattens():
    logits = LOGITS.repeat(4000, 1)
    cold, hot = _draws(logits, 0.2), _draws(logits, 5.0, seed=1)
    assert (cold == 0).float().mean() > 0.9
    assert (hot == 0).float().mean() < 0.4


def _model():
    torch.manual_seed(0)
    return RNNLanguageModel(ModelConfig(hidden_size=16, num_layers=1, embedding_dim=8), 7)


def test_generation_is_batched_and_seeded():
    model = _model()
    prompt = torch.tensor([1, 2, 3])
    config = SampleConfig(length=20, num=4, seed=11)
    first = torch.stack(list(generate_ids(model, prompt, config)), dim=1)
    again = torch.stack(list(generate_ids(model, prompt, config)), dim=1)
    assert first.shape == (4, 20)
    assert torch.equal(first, again)
    assert len({tuple(row) for row in first.tolist()}) > 1  # the samples differ


def test_greedy_generation_matches_a_manual_loop():
    model = _model().eval()
    prompt = torch.tensor([1, 2, 3])
    generated = [int(t) for t in generate_ids(model, prompt, SampleConfig(length=10, greedy=True))]
    ids = prompt.tolist()
    with torch.no_grad():
        for _ in range(10):
            logits, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    assert generated == ids[3:]


@pytest.mark.parametrize("settings, flag", [
    ({"temperature": -0.1}, "--temperature"),
    ({"temperature": float("nan")}, "--temperature"),
    ({"top_p": 0.0}, "--top-p"),
    ({"top_p": 1.5}, "--top-p"),
    ({"top_k": -1}, "--top-k"),
    ({"length": -5}, "--length"),
    ({"num": 0}, "--num"),
])
def test_sample_settings_are_validated(settings, flag):
    with pytest.raises(ConfigError, match=flag):
        SampleConfig(**settings).validate()


def _uniforms(rows: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((rows, 1), dtype=np.float32))


def test_categorical_draws_follow_the_probabilities():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05, 0.0]]).repeat(200_000, 1)
    draws = invert_cdf(probs, _uniforms(len(probs), 3))
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    torch.testing.assert_close(freq, probs[0], atol=0.005, rtol=0)


def test_zero_probability_ids_are_never_drawn_even_at_the_edges():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]]).repeat(50_000, 1)
    draws = invert_cdf(probs, _uniforms(len(probs), 0))
    assert set(draws.tolist()) == {1, 3}


def test_repetition_penalty_lowers_seen_ids_only():
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5]])
    seen = torch.tensor([[True, True, False, False]])
    out = penalize_repetition(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -2.0, 3.0, 0.5]]
    with pytest.raises(ConfigError, match="--repetition-penalty"):
        SampleConfig(repetition_penalty=0).validate()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab\n", max_size=40), st.text(alphabet="ab\n", min_size=1, max_size=3),
       st.lists(st.integers(0, 40), max_size=8))
def test_stop_sequences_cut_streamed_text_at_the_first_match(text, stop, cuts):
    bounds = sorted(set([0, len(text), *[c for c in cuts if c <= len(text)]]))
    watch = StopWatch([stop])
    out = "".join(watch.feed(text[a:b]) for a, b in zip(bounds, bounds[1:])) + watch.flush()
    expected = text[: text.find(stop)] if stop in text else text
    assert out == expected
    assert watch.done == (stop in text)


def test_generation_with_stop_and_penalty_runs_batched(trained_run):
    from chargen import api

    model = api.load(str(trained_run))
    texts = model.sample("The ", num=4, length=200, seed=2, stop=["."], repetition_penalty=1.3)
    assert len(texts) == 4 and all("." not in t for t in texts)
    assert any(len(t) < 200 for t in texts)


@pytest.mark.parametrize("top_k,top_p,temperatures", [
    (0, 1.0, [1.0] * 64), (5, 1.0, [0.7] * 64), (0, 0.8, [1.3] * 64),
    (10, 0.9, [0.5 + i / 64 for i in range(64)])])
def test_the_torch_and_numpy_backends_draw_the_same_ids(top_k, top_p, temperatures):
    """The engine's one draw on either backend: the same logits and random numbers give the
    same ids (the ONNX export's seeded text equals the run's)."""
    from chargen.generate.nplogits import NumpyOps

    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((64, 50)) * 3).astype(np.float32)
    uniforms = rng.random(64, dtype=np.float32)
    ours = draw(TorchOps(torch.device("cpu")), torch.from_numpy(logits), top_k, top_p,
                temperatures, uniforms)
    theirs = draw(NumpyOps(), logits, top_k, top_p, temperatures, uniforms)
    assert ours.tolist() == theirs.tolist()
