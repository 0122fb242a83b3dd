import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_without_torch, make_text, tiny_settings

from chargen import api
from chargen.cli import main
from chargen.errors import ChargenError, CheckpointError
from chargen.export import export_run
from chargen.generate.logits import top_k_filter as torch_top_k
from chargen.generate.logits import top_p_filter as torch_top_p
from chargen.generate.nplogits import top_k_filter, top_p_filter
from chargen.onnx_sampler import load_export

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'chargen[onnx]'")

PRIME = "The quick brown"


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("gru")
    corpus = base / "corpus.txt"
    corpus.write_text(make_text(4000, seed=1), encoding="utf-8")
    settings = tiny_settings(cell="gru", num_layers=2, hidden_size=16, max_steps=10)
    return api.train(str(corpus), str(base / "run"), quiet=True, **settings).run_dir


@pytest.fixture(scope="module")
def exports(trained_run, gru_run, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """cell -> (run, export); the LSTM's goes to the default place, the GRU's to --out."""
    gru_export = tmp_path_factory.mktemp("exports") / "gru"
    return {"lstm": (trained_run, export_run(str(trained_run))),
            "gru": (gru_run, export_run(str(gru_run), str(gru_export)))}


def torch_greedy(run: Path, length: int) -> str:
    return api.load(str(run), device="cpu").sample(PRIME, length=length, greedy=True,
                                                   precision="fp32")[0]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_greedy_continuation_from_the_export_equals_pytorch(exports, cell):
    run, export = exports[cell]
    exported = load_export(export)
    assert exported.meta["cell"] == cell
    assert exported.sample(PRIME, length=120, greedy=True)[0] == torch_greedy(run, 120)


def test_export_directory_holds_the_model_the_tokenizer_and_settings(exports):
    run, export = exports["lstm"]
    assert export == run / "export-onnx"
    assert sorted(p.name for p in export.iterdir()) == ["export.json", "model.onnx", "tokenizer.json"]
    assert (export / "tokenizer.json").read_bytes() == (run / "tokenizer.json").read_bytes()
    meta = json.loads((export / "export.json").read_text())
    assert meta["never_sample"] == [0] and meta["inputs"] == ["ids", "h", "c"]
    assert meta["data"]["tokenizer"] == "char"


def test_a_batch_samples_reproducibly_and_never_emits_the_unknown_id(exports):
    exported = load_export(exports["gru"][1])
    settings = {"length": 200, "num": 3, "seed": 7, "temperature": 5.0}
    prompt = exported.tokenizer.encode(PRIME).astype(np.int64)
    from chargen.config import SampleConfig

    steps = np.stack(list(exported.generate_ids(prompt, SampleConfig(**settings))))
    assert steps.shape == (200, 3)
    assert not (steps == exported.tokenizer.unknown_id).any()
    first, again = exported.sample(PRIME, **settings), exported.sample(PRIME, **settings)
    assert first == again and len(set(first)) == 3


def test_stop_sequence_and_filters_apply(exports):
    exported = load_export(exports["lstm"][1])
    texts = exported.sample(PRIME, length=300, num=2, seed=1, top_k=5, top_p=0.9, stop=[" "],
                            repetition_penalty=1.2)
    assert all(" " not in text for text in texts)


def test_cli_samples_an_export_without_importing_torch(exports):
    run, export = exports["lstm"]
    out = cli_without_torch(["sample", str(export), "--greedy", "--prime", PRIME, "--length", "60"])
    assert out == PRIME + torch_greedy(run, 60) + "\n"


def test_which_does_not_apply_to_an_export(exports, capsys):
    assert main(["sample", str(exports["lstm"][1]), "--prime", "The", "--which", "last"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_an_existing_non_empty_target_is_refused_and_kept(trained_run, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already exists"):
        export_run(str(trained_run), str(target))
    assert (target / "notes.txt").read_text() == "mine"


def test_missing_onnxruntime_names_the_extra(exports, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ChargenError, match=r"pip install 'chargen\[onnx\]'"):
        load_export(exports["gru"][1])
    assert main(["sample", str(exports["gru"][1]), "--prime", "The"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("chargen: error:") and err.count("\n") == 1


def test_numpy_filters_match_the_torch_ones():
    logits = np.random.default_rng(0).normal(size=(4, 30)).astype(np.float32)
    for k in (1, 5, 29):
        assert np.array_equal(top_k_filter(logits, k), torch_top_k(torch.from_numpy(logits), k).numpy())
    for p in (0.1, 0.5, 0.95):
        ours, theirs = top_p_filter(logits, p), torch_top_p(torch.from_numpy(logits), p).numpy()
        assert np.array_equal(np.isinf(ours), np.isinf(theirs))


@pytest.mark.parametrize("settings", [
    {"window": 6, "input_encoding": "scalar"},  # tutorial B's framing
    {"window": 4, "window_layout": "features", "input_encoding": "onehot", "bidirectional": True},
    {"batching": "prefix", "window": 5},
])
def test_a_window_run_exports_a_window_model_that_samples_like_the_run(tmp_path, settings):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(3000, seed=2), encoding="utf-8")
    run = api.train(str(corpus), str(tmp_path / "run"), quiet=True,
                    **tiny_settings(**{"batching": "window", "max_steps": 10, **settings})).run_dir
    export = export_run(str(run), str(tmp_path / "export"))
    meta = json.loads((export / "export.json").read_text())
    assert meta["inputs"] == ["ids"] and meta["window"] == settings["window"]
    assert meta["kind"]["window"] == settings["window"]
    assert load_export(export).sample(PRIME, length=80, greedy=True)[0] == torch_greedy(run, 80)
    del meta["kind"]  # an export written before the kind was recorded reads as the same kind
    (export / "export.json").write_text(json.dumps(meta))
    assert load_export(export).sample(PRIME, length=80, greedy=True)[0] == torch_greedy(run, 80)
    out, err = cli_without_torch(["sample", str(export), "--prime", "The", "--num", "3",
                                  "--length", "30", "--seed", "1"], stderr=True)
    assert err.count("--- sample") == 3 and out.startswith("The")


def test_a_hostile_export_is_refused_in_one_line(exports, tmp_path):
    """The metadata may not point outside the export, and no file is read unbounded."""
    import shutil

    from chargen.errors import CheckpointError

    export = Path(shutil.copytree(exports["lstm"][1], tmp_path / "copy"))
    meta = json.loads((export / "export.json").read_text())
    (export / "export.json").write_text(json.dumps({**meta, "tokenizer_file": "../../etc/passwd"}))
    with pytest.raises(CheckpointError, match="plain names"):
        load_export(export)
    (export / "export.json").write_text(json.dumps({**meta, "kind": {"framing": "stream"}}))
    with pytest.raises(CheckpointError, match="export the run again"):
        load_export(export)
    (export / "export.json").write_text(json.dumps(meta))
    (export / "tokenizer.json").unlink()
    (export / "tokenizer.json").symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_export(export)


def test_beam_on_an_export_is_refused_from_the_api_too(exports):
    from chargen.errors import ConfigError

    with pytest.raises(ConfigError, match="beam search runs on a trained run"):
        load_export(exports["lstm"][1]).sample(PRIME, length=5, beam=3)
