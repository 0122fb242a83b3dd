"""The tutorials' framings, input encodings, bidirectional window models, the train-loss
checkpoint rule, sliding-window sampling and the tutorial presets. Tiny models only."""

import json

import numpy as np
import pytest
import torch
from conftest import make_text

from chargen import api
from chargen.batches import make_batches
from chargen.checkpoint import BEST, RunDir, load_checkpoint
from chargen.cli import main
from chargen.config import PRESETS, ModelConfig, RunConfig, SampleConfig
from chargen.encoding import PAD_SCALAR
from chargen.errors import ConfigError
from chargen.generate import readers as sliding
from chargen.generate.sample import generate_ids
from chargen.kinds import RunKind, kind_of
from chargen.model import RNNLanguageModel

IDS = (np.arange(500) % 37 + 1).astype(np.uint16)  # id = position % 37 + 1, never 0
VOCAB = 40
TINY_MODEL = {"hidden_size": 16, "num_layers": 1, "embedding_dim": 8, "dropout": 0.0}


def _kind(kind, window=5, layout="time-steps"):
    return RunKind(kind, window, layout, VOCAB)


def _batches(kind, window=5, batch_size=8, seed=3, ids=IDS):
    return make_batches(_kind(kind, window), ids, batch_size, 32, seed)


@pytest.mark.parametrize("kind", ["window", "variable-window", "prefix"])
def test_window_batches_hold_the_ids_before_each_target(kind):
    batches = _batches(kind, window=5)
    x, y = batches.batch(0)
    assert x.shape == (8, 5) and y.shape == (8, 1) and x.dtype == torch.int64
    for row, target in zip(x.tolist(), y[:, 0].tolist()):
        real = [i for i in row if i != VOCAB]
        assert real, row
        assert all(i == VOCAB for i in row[: 5 - len(real)])  # padding only on the left
        # each real id is the one before its successor (ids count up modulo 37)
        for before, after in zip(real + [target], real[1:] + [target]):
            assert after == before % 37 + 1
    assert VOCAB not in y  # the padding id is never a target


def test_fixed_windows_cover_every_position_once_per_epoch():
    batches = _batches("window", window=5, batch_size=16, ids=np.arange(105, dtype=np.uint16))
    assert batches.steps_per_epoch == 7  # 100 targets (positions 5..104), the last batch filled
    seen = torch.cat([batches.batch(s)[1] for s in range(7)]).flatten().tolist()
    assert set(seen) == set(range(5, 105)) and len(seen) == 112
    next_epoch = torch.cat([batches.batch(s)[1] for s in range(7, 14)]).flatten().tolist()
    assert set(next_epoch) == set(seen) and next_epoch != seen  # reshuffled


def test_prefix_framing_pads_to_the_window():
    ids = np.arange(1, 30, dtype=np.uint16)
    batches = _batches("prefix", window=6, batch_size=28, ids=ids)
    x, y = batches.batch(0)
    rows = {int(t): row for t, row in zip(y[:, 0], x.tolist())}
    assert set(rows) == set(range(2, 30))  # every position but the first
    assert rows[2] == [VOCAB] * 5 + [1]
    assert rows[4] == [VOCAB] * 3 + [1, 2, 3]
    assert rows[20] == list(range(14, 20))


def test_variable_windows_vary_and_stay_within_bounds():
    x, _ = _batches("variable-window", window=5, batch_size=200).batch(0)
    lengths = (x != VOCAB).sum(dim=1)
    assert lengths.min() >= 1 and lengths.max() <= 5
    assert len(set(lengths.tolist())) == 5


@pytest.mark.parametrize("kind", ["window", "variable-window", "prefix"])
def test_window_batches_are_a_pure_function_of_seed_and_step(kind):
    a, b, c = _batches(kind), _batches(kind), _batches(kind, seed=4)
    steps = [0, 75, 3, 140]
    for step in steps:
        assert all(torch.equal(u, v) for u, v in zip(a.batch(step), b.batch(step)))
    fresh = _batches(kind)  # a resumed run's batcher starting mid-way
    assert torch.equal(fresh.batch(140)[0], a.batch(140)[0])
    assert not torch.equal(a.batch(0)[0], c.batch(0)[0])


@pytest.mark.parametrize("encoding,width", [("embedding", 8), ("onehot", VOCAB), ("scalar", 1)])
def test_input_encodings(encoding, width):
    config = ModelConfig(input_encoding=encoding, **TINY_MODEL)
    model = RNNLanguageModel(config, VOCAB, _kind("window"))
    ids = torch.tensor([[VOCAB, 1, 2, 3, 39]])
    inputs = model.encode(ids)
    assert inputs.shape == (1, 5, width)
    pad, first = inputs[0, 0], inputs[0, 1]
    assert not torch.equal(pad, first)
    if encoding == "scalar":
        assert inputs[0, :, 0].tolist() == pytest.approx([PAD_SCALAR, 1 / 40, 2 / 40, 3 / 40, 39 / 40])
    if encoding == "onehot":
        assert pad.sum() == 0 and first[1] == 1 and first.sum() == 1
    logits, _ = model(ids)
    assert logits.shape == (1, 1, VOCAB)  # one prediction per window; padding is no output


def test_the_features_layout_reads_the_window_as_one_step():
    model = RNNLanguageModel(ModelConfig(input_encoding="onehot", **TINY_MODEL), VOCAB,
                             _kind("window", window=3, layout="features"))
    assert model.encode(torch.tensor([[1, 2, 3]])).shape == (1, 1, 3 * VOCAB)
    assert model.rnn.input_size == 3 * VOCAB
    assert model(torch.tensor([[1, 2, 3], [4, 5, 6]]))[0].shape == (2, 1, VOCAB)


def test_a_bidirectional_window_model_reads_the_whole_window_both_ways():
    model = RNNLanguageModel(ModelConfig(bidirectional=True, **TINY_MODEL), VOCAB,
                             _kind("window"))
    assert model.head.in_features == 32
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    changed = torch.tensor([[9, 2, 3, 4, 5]])  # only the first id differs
    backward = slice(16, 32)
    hidden_a = model._window_end(model.rnn(model.encode(ids))[0])[..., backward]
    hidden_b = model._window_end(model.rnn(model.encode(changed))[0])[..., backward]
    assert not torch.equal(hidden_a, hidden_b)  # the backward half has read the first id


@pytest.mark.parametrize("settings,needle", [
    ({"bidirectional": True}, "--bidirectional needs a window framing"),
    ({"bidirectional": True, "batching": "sequences"}, "read the very characters"),
    ({"window_layout": "features", "batching": "window"}, "--input-encoding scalar or onehot"),
    ({"window_layout": "features", "input_encoding": "scalar"}, "needs a window framing"),
    ({"val_fraction": 0.0}, "--keep train-loss"),
    ({"input_encoding": "bits"}, "--input-encoding must be one of"),
    ({"batching": "windows"}, "--batching must be one of"),
    ({"window": 0}, "--window must be more than zero"),
])
def test_settings_refused_together(settings, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("-", r"\-")):
        RunConfig().with_overrides(settings).validate()


def test_accepted_combinations():
    RunConfig().with_overrides({"bidirectional": True, "batching": "prefix"}).validate()
    RunConfig().with_overrides({"val_fraction": 0.0, "keep": "train-loss"}).validate()
    RunConfig().with_overrides({"window_layout": "features", "batching": "variable-window",
                                "input_encoding": "onehot"}).validate()


def test_old_runs_keep_their_settings_and_weight_names():
    raw = RunConfig().to_dict()
    for section, names in (("model", ("input_encoding", "input_dropout", "bidirectional")),
                           ("data", ("window", "window_layout")), ("train", ("keep",))):
        for name in names:
            del raw[section][name]
    config = RunConfig.from_dict(raw)
    model = RNNLanguageModel(config.model, 30, kind_of(config.data, 30))
    assert model.embedding.weight.shape == (30, config.model.embedding_dim)
    assert {k.split(".")[0] for k in model.state_dict()} == {"embedding", "rnn", "head"}


def _train_window_run(tmp_path, text, name="run", **overrides):
    corpus = tmp_path / f"{name}.txt"
    corpus.write_text(text, encoding="utf-8")
    settings = {**TINY_MODEL, "batching": "window", "window": 4, "batch_size": 16,
                "optimizer": "adam", "lr": 0.01, "schedule": "constant", "warmup_steps": 0,
                "weight_decay": 0.0, "device": "cpu", "precision": "fp32", "seed": 7,
                "eval_every": 1000, **overrides}
    return api.train(str(corpus), str(tmp_path / name), quiet=True, auto=False, **settings)


def test_train_loss_rule_keeps_the_epoch_with_the_lowest_training_loss(tmp_path):
    result = _train_window_run(tmp_path, make_text(400), val_fraction=0.0, keep="train-loss",
                               epochs=4, lr=0.05)
    epochs = [r for r in RunDir(result.run_dir).read_metrics() if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    best = min(epochs, key=lambda r: r["epoch_train_loss"])
    _, _, info = load_checkpoint(result.run_dir / BEST)
    assert info["step"] == best["step"] == result.best_train_step
    assert info["train_loss"] == pytest.approx(best["epoch_train_loss"])
    assert not any("val_loss" in r for r in RunDir(result.run_dir).read_metrics())


def test_a_train_loss_run_stopped_before_its_first_epoch_says_so(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(corpus), "--out", str(run), "--preset", "tiny", "--device", "cpu",
                 "--val-fraction", "0", "--keep", "train-loss", "--max-steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "no epoch finished, so sampling uses the last weights" in err and "inf" not in err
    assert main(["sample", str(run), "--prime", "the", "--length", "5"]) == 0


def test_window_models_evaluate_windows(tmp_path):
    result = _train_window_run(tmp_path, make_text(1500), max_steps=3, eval_every=3)
    records = [r for r in RunDir(result.run_dir).read_metrics() if "val_loss" in r]
    assert records and np.isfinite(records[0]["val_loss"])
    model = api.load(str(result.run_dir))
    evaluation = model.evaluate(make_text(300, seed=5))
    assert evaluation.tokens == len(make_text(300, seed=5)) - 4  # every full window


def test_window_sampling_slides_and_continues_the_alphabet(tmp_path):
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    result = _train_window_run(tmp_path, alphabet * 12, val_fraction=0.0, keep="train-loss",
                               window=3, input_encoding="onehot", hidden_size=32, batch_size=32,
                               lr=0.05, epochs=25)
    model = api.load(str(result.run_dir))
    text = "".join(model.generate("xyzab", length=30, greedy=True))
    assert text == (alphabet * 3)[2:32]
    short = "".join(model.generate("a", length=5, greedy=True))  # left-padded prime
    assert len(short) == 5


def test_window_sampling_never_emits_padding_or_unknown():
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(**TINY_MODEL), VOCAB, _kind("prefix"))
    with torch.no_grad():
        model.head.bias[0] = 50.0  # the unknown id would win every draw
    config = SampleConfig(length=50, num=8, temperature=2.0, seed=1)
    ids = torch.stack(list(generate_ids(model, torch.tensor([1, 2]), config, banned=[0])))
    assert ids.shape == (50, 8)
    assert ids.min() >= 1 and ids.max() < VOCAB


@pytest.mark.parametrize("kind,cell,encoding,layers", [
    ("window", "lstm", "scalar", 1), ("variable-window", "gru", "onehot", 2),
    ("prefix", "lstm", "embedding", 3)])
def test_pipelined_window_reading_samples_what_rereading_does(kind, cell, encoding, layers,
                                                              monkeypatch):
    """WindowPipeline (every window in flight, one batched step per token) against reading
    each window whole: the same ids, greedy and sampled, short and long prompts."""
    torch.manual_seed(3)
    model = RNNLanguageModel(ModelConfig(**{**TINY_MODEL, "cell": cell, "num_layers": layers,
                                            "input_encoding": encoding}),
                             VOCAB, _kind(kind, window=6)).eval()
    windows = torch.randint(0, VOCAB + 1, (3, 6))  # the padding id is VOCAB
    with torch.no_grad():
        rereading = sliding.Rereading(model, windows)
        pipeline = sliding.WindowPipeline(model, windows, None)
        for _ in range(9):
            torch.testing.assert_close(pipeline.logits, rereading.logits, rtol=1e-5, atol=1e-5)
            next_ids = torch.randint(1, VOCAB, (3,))
            rereading.push(next_ids)
            pipeline.push(next_ids)
    results = {}
    for limit in (0, 10**6):  # rows allowed in the pipeline: none, then any
        monkeypatch.setattr(sliding, "PIPELINE_MAX_ROWS", {None: limit})
        chosen = sliding.window_reader(model, torch.zeros(2, 6, dtype=torch.long), "fp32")
        assert isinstance(chosen, sliding.WindowPipeline if limit else sliding.Rereading)
        results[limit] = [torch.stack(list(generate_ids(model, torch.tensor(prompt), config)))
                          for prompt in ([4], list(range(1, 12)))
                          for config in (SampleConfig(length=40, greedy=True, precision="fp32"),
                                         SampleConfig(length=40, num=3, seed=5, precision="fp32"))]
    assert all(torch.equal(a, b) for a, b in zip(results[0], results[10**6], strict=True))


def test_windows_read_whole_are_not_pipelined():
    """A bidirectional model reads each window from both ends, and the features layout reads it
    as one step: neither can keep windows in flight. Nor does a short sample pay for one."""
    windows = torch.zeros(1, 5, dtype=torch.long)
    bidirectional = RNNLanguageModel(ModelConfig(**TINY_MODEL, bidirectional=True), VOCAB,
                                     _kind("window"))
    features = RNNLanguageModel(ModelConfig(**TINY_MODEL), VOCAB, _kind("window", layout="features"))
    for model in (bidirectional, features):
        assert isinstance(sliding.window_reader(model, windows), sliding.Rereading)
    plain = RNNLanguageModel(ModelConfig(**TINY_MODEL), VOCAB, _kind("window"))
    assert isinstance(sliding.window_reader(plain, windows), sliding.WindowPipeline)
    # shorter than a window: filling the pipeline would cost more than it saves
    assert isinstance(sliding.window_reader(plain, windows, length=4), sliding.Rereading)


def _preset_overrides(name):
    small = {"hidden_size": 16, "window": 8, "seq_len": 16, "batch_size": 4, "max_steps": 2,
             "device": "cpu", "strip_gutenberg": False}
    if PRESETS[name].get("input_encoding", "embedding") == "embedding":
        small["embedding_dim"] = 8
    return small


@pytest.mark.parametrize("name", ["alice-small", "alice-large", "shakespeare-gru",
                                  "chinese-lstm"])
def test_each_tutorial_preset_trains_with_overrides(tmp_path, name):
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(800) if name != "chinese-lstm" else "人工智慧改變世界。" * 40,
                      encoding="utf-8")
    settings = {**PRESETS[name], **_preset_overrides(name)}
    result = api.train(str(corpus), str(tmp_path / "run"), quiet=True, auto=False, **settings)
    assert result.steps == 2
    saved = RunDir(result.run_dir).read_config()
    assert saved.train.keep == "train-loss" and saved.data.val_fraction == 0.0
    assert saved.model.hidden_size == 16 and saved.train.epochs == PRESETS[name]["epochs"]
    assert len(api.load(str(result.run_dir)).sample("人工" if name == "chinese-lstm" else "the",
                                                    length=5, seed=0)[0]) == 5


def test_preset_from_the_cli_with_overriding_flags(tmp_path, capsys):
    corpus = tmp_path / "alice.txt"
    corpus.write_text(make_text(800).upper(), encoding="utf-8")
    run = tmp_path / "run"
    code = main(["train", "--preset", "alice-small", str(corpus), "--out", str(run),
                 "--hidden-size", "16", "--window", "10", "--batch-size", "8", "--epochs", "0.1",
                 "--keep-gutenberg", "--device", "cpu", "--quiet", "--init", "keras"])
    assert code == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["data"]["batching"] == "window" and config["data"]["window"] == 10
    assert config["model"]["init"] == "keras"
    assert config["model"]["input_encoding"] == "scalar" and config["model"]["hidden_size"] == 16
    assert config["data"]["lowercase"] is True
    assert main(["sample", str(run), "--length", "20", "--greedy", "--prime", "the"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the") and len(out) == len("the") + 20 + 1  # + the final newline
    assert out == out.lower()  # trained on lowercased text
    assert main(["eval", str(run), str(corpus)]) == 0
    assert "bits/char" in capsys.readouterr().out


def test_presets_list_every_setting(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    alice = out[out.index("alice-small:") : out.index("alice-large:")]
    for flag in ("--batching window", "--window 100", "--input-encoding scalar", "--lowercase",
                 "--keep train-loss", "--val-fraction 0.0", "--grad-clip 0.0", "--epochs 20"):
        assert flag in alice.replace("\n    ", " "), flag


def test_resume_of_a_window_run_is_exact(tmp_path):
    from safetensors.torch import load_file

    from chargen.checkpoint import LAST

    text = make_text(600)
    settings = {"batching": "variable-window", "val_fraction": 0.0, "keep": "train-loss",
                "eval_every": 4, "dropout": 0.2, "input_dropout": 0.1}
    _train_window_run(tmp_path, text, "straight", max_steps=8, **settings)
    _train_window_run(tmp_path, text, "split", max_steps=4, **settings)
    api.train(resume=str(tmp_path / "split"), max_steps=8, quiet=True)
    a, b = (load_file(str(tmp_path / name / LAST)) for name in ("straight", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
