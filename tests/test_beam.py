import itertools

import pytest
import torch
from conftest import make_text, tiny_settings

from chargen import api
from chargen.cli import main
from chargen.config import ModelConfig, SampleConfig
from chargen.errors import ConfigError
from chargen.generate import readers as sliding
from chargen.generate.beam import beam_search
from chargen.generate.logits import banned_bias
from chargen.generate.readers import initial_windows, window_logits
from chargen.generate.sample import generate_ids
from chargen.kinds import RunKind
from chargen.model import RNNLanguageModel
from chargen.tokenizer import CharTokenizer


def _model(vocab_size: int, seed: int = 0, cell: str = "lstm") -> RNNLanguageModel:
    torch.manual_seed(seed)
    model = RNNLanguageModel(ModelConfig(cell=cell, hidden_size=16, num_layers=2,
                                         embedding_dim=8, dropout=0.0), vocab_size)
    with torch.no_grad():  # sharper distributions than the initial near-uniform ones
        model.head.weight.mul_(8.0)
    return model.eval()


def continuation_log_prob(model: RNNLanguageModel, prompt: torch.Tensor, ids, banned=()) -> float:
    """log P(ids | prompt) under the model, with the banned ids masked out as when generating:
    the whole continuation read in one pass, the oracle the search is checked against."""
    with torch.inference_mode():
        full = torch.cat([prompt, torch.tensor(list(ids), dtype=prompt.dtype)])
        if model.kind.windowed:  # each token from the window before it
            window, pad = model.kind.window, model.kind.pad_id
            windows = torch.cat([initial_windows(full[:end], 1, window, pad)
                                 for end in range(len(prompt), len(full))])
            logits = window_logits(model, windows)
        else:
            logits, _ = model(full[:-1].view(1, -1))
            logits = logits[0, len(prompt) - 1 :].float()
        bias = banned_bias(model.vocab_size, banned, logits.device)
        logits = logits if bias is None else logits + bias
        log_probs = torch.log_softmax(logits, dim=-1)
        return float(log_probs.gather(1, torch.tensor(list(ids)).view(-1, 1)).sum())


TOKENIZER = CharTokenizer(list("abcde"))  # 6 ids, [UNK] = 0 never chosen
PROMPT = torch.tensor([1, 2, 3])


def _search(model, **settings):
    config = SampleConfig(precision="fp32", **settings).validate()
    return beam_search(model, TOKENIZER, PROMPT, config)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_beam_of_one_is_greedy(cell):
    model = _model(TOKENIZER.vocab_size, cell=cell)
    greedy = [int(ids) for ids in generate_ids(
        model, PROMPT, SampleConfig(length=12, greedy=True, precision="fp32"), [0])]
    (best,) = _search(model, length=12, beam=1)
    assert list(best.ids) == greedy
    assert best.text == TOKENIZER.decode(greedy)


@pytest.mark.parametrize("seed", range(4))
def test_beam_scores_are_the_model_log_probability_and_beat_greedy(seed):
    model = _model(TOKENIZER.vocab_size, seed)
    greedy = [int(ids) for ids in generate_ids(
        model, PROMPT, SampleConfig(length=10, greedy=True, precision="fp32"), [0])]
    best = _search(model, length=10, beam=4)[0]
    assert best.log_prob == pytest.approx(continuation_log_prob(model, PROMPT, best.ids, [0]),
                                          abs=1e-4)
    assert best.log_prob >= continuation_log_prob(model, PROMPT, greedy, [0]) - 1e-6


def test_a_wide_enough_beam_finds_the_exact_best_sequences():
    model = _model(TOKENIZER.vocab_size, seed=7)
    length, allowed = 3, range(1, TOKENIZER.vocab_size)
    exhaustive = sorted((continuation_log_prob(model, PROMPT, ids, [0]), ids)
                        for ids in itertools.product(allowed, repeat=length))[::-1]
    found = _search(model, length=length, beam=len(allowed) ** (length - 1), num=3)
    assert [h.ids for h in found] == [ids for _, ids in exhaustive[:3]]


@pytest.mark.parametrize("bidirectional,pipelined", [(False, False), (False, True), (True, False)])
def test_window_models_search_over_sliding_windows(bidirectional, pipelined, monkeypatch):
    """Beams over window models, each window read whole or (unidirectional models) kept in
    flight by sliding.WindowPipeline."""
    monkeypatch.setattr(sliding, "PIPELINE_MAX_ROWS", {None: 10**6 if pipelined else 0})
    readers, original = [], sliding.window_reader

    def noted_reader(*args):
        reader = original(*args)
        readers.append(type(reader))
        return reader

    monkeypatch.setattr(sliding, "window_reader", noted_reader)
    torch.manual_seed(5)
    vocab = TOKENIZER.vocab_size
    config = ModelConfig(hidden_size=16, num_layers=1, embedding_dim=8, dropout=0.0,
                         bidirectional=bidirectional)
    model = RNNLanguageModel(config, vocab, RunKind("window", 2, "time-steps", vocab)).eval()
    with torch.no_grad():
        model.head.weight.mul_(8.0)
    greedy = [int(ids) for ids in generate_ids(
        model, PROMPT, SampleConfig(length=8, greedy=True, precision="fp32"), [0])]
    assert list(_search(model, length=8, beam=1)[0].ids) == greedy
    length, allowed = 3, range(1, vocab)
    exhaustive = sorted((continuation_log_prob(model, PROMPT, ids, [0]), ids)
                        for ids in itertools.product(allowed, repeat=length))[::-1]
    found = _search(model, length=length, beam=len(allowed) ** (length - 1), num=3)
    assert [h.ids for h in found] == [ids for _, ids in exhaustive[:3]]
    assert found[0].log_prob == pytest.approx(exhaustive[0][0], abs=1e-4)
    assert set(readers) == {sliding.WindowPipeline if pipelined else sliding.Rereading}


def test_beam_search_is_deterministic_and_sorted():
    model = _model(TOKENIZER.vocab_size, seed=2)
    first, second = _search(model, length=8, beam=5, num=5), _search(model, length=8, beam=5, num=5)
    assert first == second
    assert [h.log_prob for h in first] == sorted((h.log_prob for h in first), reverse=True)
    assert len({h.ids for h in first}) == 5


def _greedy_text(model, length: int) -> str:
    config = SampleConfig(length=length, greedy=True, precision="fp32")
    return TOKENIZER.decode([int(ids) for ids in generate_ids(model, PROMPT, config, [0])])


def test_stop_finishes_a_beam_and_cuts_the_text():
    model = _model(TOKENIZER.vocab_size, seed=1)
    stop = _greedy_text(model, 3)[-1]  # a character the model is happy to produce
    found = _search(model, length=30, beam=3, num=3, stop=(stop,))
    assert found and all(stop not in h.text for h in found)
    finished = [h for h in found if len(h.ids) < 30]
    assert finished and all(TOKENIZER.decode(h.ids).endswith(stop) for h in finished)


def test_length_norm_ranks_by_log_probability_per_token():
    model = _model(TOKENIZER.vocab_size, seed=1)
    stop = _greedy_text(model, 3)[-1]
    found = _search(model, length=20, beam=4, num=4, stop=(stop,), length_norm=True)
    assert len({len(h.ids) for h in found}) > 1  # finished beams of several lengths
    per_token = [h.log_prob / len(h.ids) for h in found]
    assert per_token == sorted(per_token, reverse=True)


@pytest.mark.parametrize("settings_, message", [
    ({"beam": 2, "temperature": 0.8}, "--temperature"),
    ({"beam": 2, "top_k": 5}, "--top-k"),
    ({"beam": 2, "greedy": True}, "--greedy"),
    ({"beam": 2, "num": 3}, "--num 3 is more than --beam 2"),
    ({"beam": -1}, "--beam"),
])
def test_beam_refuses_sampling_settings(settings_, message):
    with pytest.raises(ConfigError, match=message):
        SampleConfig(**settings_).validate()


def test_api_and_cli_beam(trained_run, capsys):
    model = api.load(str(trained_run))
    texts = model.sample("The quick", length=20, beam=3, num=2, precision="fp32")
    assert len(texts) == 2 and texts[0] != texts[1]
    assert texts[0] == model.sample("The quick", length=20, beam=3, precision="fp32")[0]
    assert main(["sample", str(trained_run), "--prime", "The quick", "--length", "20",
                 "--beam", "3", "--precision", "fp32"]) == 0
    assert capsys.readouterr().out == "The quick" + texts[0] + "\n"


def test_cli_beam_with_temperature_is_a_one_line_error(trained_run, capsys):
    code = main(["sample", str(trained_run), "--beam", "3", "--temperature", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("chargen: error: --beam") and err.count("\n") == 1


def test_word_level_beam(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    run = api.train(str(corpus), str(tmp_path / "run"), quiet=True,
                    **tiny_settings(tokenizer="word", max_steps=4)).run_dir
    (text,) = api.load(str(run)).sample("The lazy", length=6, beam=3, precision="fp32")
    assert "[UNK]" not in text and len(text) > 0
