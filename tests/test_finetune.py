import dataclasses
import json

import pytest
import torch
from conftest import make_text, tiny_settings
from safetensors.torch import load_file

from chargen import api
from chargen.checkpoint import BEST, CONFIG, LAST
from chargen.cli import main
from chargen.errors import ConfigError, TokenizerError
from chargen.finetune import initial_weights, load_base
from chargen.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("base")
    (base / "corpus.txt").write_text(make_text(6000))
    return api.train(str(base / "corpus.txt"), str(base / "run"), quiet=True,
                     **tiny_settings(num_layers=2, max_steps=10)).run_dir


def _new_corpus(tmp_path, extra=""):
    path = tmp_path / "new.txt"
    path.write_text(make_text(6000, seed=7) + extra * 50)
    return path


def test_fine_tuning_starts_from_the_base_weights_at_a_lower_lr(tmp_path, base_run):
    result = api.train(str(_new_corpus(tmp_path)), str(tmp_path / "tuned"), quiet=True,
                       init_from=str(base_run), max_steps=5, eval_every=5, device="cpu",
                       precision="fp32", seq_len=32, batch_size=8)
    meta = json.loads((result.run_dir / CONFIG).read_text())
    base_meta = json.loads((base_run / CONFIG).read_text())
    assert meta["config"]["model"] == base_meta["config"]["model"]
    assert meta["config"]["train"]["lr"] == pytest.approx(base_meta["config"]["train"]["lr"] / 4)
    assert meta["corpus"]["init_from"] == str(base_run)
    fresh = api.train(str(_new_corpus(tmp_path)), str(tmp_path / "fresh"), quiet=True,
                      **tiny_settings(num_layers=2, max_steps=5, eval_every=5))
    assert result.best_val < fresh.best_val  # a head start over random weights


def test_new_characters_are_added_by_default_refused_or_replaced(tmp_path, base_run, caplog):
    corpus = _new_corpus(tmp_path, extra="Zebra\u00e9 ")
    with pytest.raises(TokenizerError, match="leave out --no-extend-vocab"):
        api.train(str(corpus), str(tmp_path / "a"), quiet=True, init_from=str(base_run),
                  extend_vocab=False, max_steps=2)
    assert not (tmp_path / "a").exists()
    added = api.train(str(corpus), str(tmp_path / "d"), quiet=True, init_from=str(base_run),
                      max_steps=2, seq_len=32, batch_size=8)
    said = [r for r in caplog.records if "adding" in r.getMessage()]
    assert "'Z'" in said[0].getMessage() and said[0].levelname == "WARNING"  # shown when quiet
    assert {"Z", "\u00e9"} <= set(api.load(str(added.run_dir)).tokenizer.chars)
    assert api.run_info(str(added.run_dir))["corpus"]["extended_vocab"] is True
    replaced = api.train(str(corpus), str(tmp_path / "b"), quiet=True, init_from=str(base_run),
                         unknown="replace", max_steps=2, seq_len=32, batch_size=8)
    assert api.load(str(replaced.run_dir)).tokenizer.chars == load_base(str(base_run)).tokenizer.chars
    extended = api.train(str(corpus), str(tmp_path / "c"), quiet=True, init_from=str(base_run),
                         extend_vocab=True, max_steps=2, seq_len=32, batch_size=8)
    chars = api.load(str(extended.run_dir)).tokenizer.chars
    assert {"Z", "\u00e9"} <= set(chars)
    assert len(api.load(str(extended.run_dir)).sample("Z\u00e9", length=3, seed=0)[0]) == 3


def test_extended_vocabulary_keeps_old_rows_and_starts_new_ones_unlikely(base_run):
    base = load_base(str(base_run))
    grown = CharTokenizer(base.tokenizer.chars + ["\u00e9", "Z"])
    weights = initial_weights(base, grown)
    old_embedding, new_embedding = base.weights["embedding.weight"], weights["embedding.weight"]
    for char in base.tokenizer.chars:
        old_id = base.tokenizer.encode(char)[0]
        new_id = grown.encode(char)[0]
        assert torch.equal(new_embedding[new_id], old_embedding[old_id])
        assert torch.equal(weights["head.weight"][new_id], base.weights["head.weight"][old_id])
    z = grown.encode("Z")[0]
    torch.testing.assert_close(new_embedding[z], old_embedding.mean(dim=0))
    assert weights["head.bias"][z] == base.weights["head.bias"].min()


def test_freeze_layers_keeps_the_lower_layers_fixed(tmp_path, base_run):
    code = main(["train", str(_new_corpus(tmp_path)), "--out", str(tmp_path / "frozen"),
                 "--init-from", str(base_run), "--freeze-layers", "1", "--max-steps", "6",
                 "--seq-len", "32", "--batch-size", "8", "--device", "cpu", "--quiet"])
    assert code == 0
    before, after = load_file(str(base_run / BEST)), load_file(str(tmp_path / "frozen" / LAST))
    for name in ("embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0"):
        assert torch.equal(before[name], after[name]), name
    for name in ("rnn.weight_hh_l1", "head.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert api.train(resume=str(tmp_path / "frozen"), max_steps=9, quiet=True).steps == 9
    again = load_file(str(tmp_path / "frozen" / LAST))
    assert torch.equal(before["rnn.weight_hh_l0"], again["rnn.weight_hh_l0"])


def test_fine_tuning_refuses_a_new_model_shape(tmp_path, base_run):
    with pytest.raises(ConfigError, match="--hidden-size"):
        api.train(str(_new_corpus(tmp_path)), str(tmp_path / "x"), quiet=True,
                  init_from=str(base_run), hidden_size=64, max_steps=2)
    with pytest.raises(ConfigError, match="--freeze-layers 5"):
        api.train(str(_new_corpus(tmp_path)), str(tmp_path / "y"), quiet=True,
                  init_from=str(base_run), freeze_layers=5, max_steps=2, seq_len=32,
                  batch_size=8)
    assert not (tmp_path / "y").exists()


def test_fine_tuning_keeps_how_the_base_run_read_its_text(tmp_path):
    """A window run on lowercased text (the alice presets' recipe): the fine-tune reads the new
    corpus the same way, so its capitals need no --extend-vocab, and keeps the base's framing
    and optimiser; flags still override, and the base's step budget is not inherited."""
    (tmp_path / "base.txt").write_text(make_text(4000).lower())
    recipe = dict(batching="window", window=12, window_layout="features", input_encoding="scalar",
                  lowercase=True, optimizer="adam", schedule="constant", val_fraction=0.0,
                  keep="train-loss")
    base = api.train(str(tmp_path / "base.txt"), str(tmp_path / "base"), quiet=True,
                     **tiny_settings(max_steps=4, **recipe)).run_dir
    tuned = api.train(str(_new_corpus(tmp_path)), str(tmp_path / "tuned"), quiet=True,
                      init_from=str(base), max_steps=3, batch_size=4)
    base_config, config = api.load(str(base)).config, api.load(str(tuned.run_dir)).config
    assert tuned.steps == 3
    assert config.data == dataclasses.replace(base_config.data, batch_size=4)
    assert config.train.optimizer == "adam" and config.train.schedule == "constant"
    assert config.train.max_steps == 3 and base_config.train.max_steps == 4
    assert len(api.load(str(tuned.run_dir)).sample("the quick brown", length=5, seed=0)[0]) == 5
    with pytest.raises(ConfigError, match="--unknown replace"):  # scalar inputs scale by vocab
        api.train(str(_new_corpus(tmp_path)), str(tmp_path / "grown"), quiet=True,
                  init_from=str(base), lowercase=False, extend_vocab=True, max_steps=1)
    with pytest.raises(TokenizerError, match="cannot be added"):  # and are not grown by default
        api.train(str(_new_corpus(tmp_path)), str(tmp_path / "grown"), quiet=True,
                  init_from=str(base), lowercase=False, max_steps=1)
    assert not (tmp_path / "grown").exists()
