"""`chargen alphabet`: the tutorial-A framings, the compiled trainer against PyTorch, the CLI."""

import json
import math
import sys

import numpy as np
import pytest
import torch

from chargen.cli import main
from chargen.errors import ChargenError, ConfigError
from chargen.experiments import alphabet
from chargen.experiments.alphabet import FRAMINGS, LETTERS


def test_framings_match_the_tutorial():
    shapes = [alphabet.framing_pairs(f, np.random.default_rng(0))[0].shape for f in FRAMINGS]
    assert shapes == [(25, 1, 1), (23, 1, 3), (23, 3, 1), (1000, 5, 1)]
    ids, targets = alphabet.framing_pairs(FRAMINGS[1], np.random.default_rng(0))
    assert ids[0].tolist() == [[0, 1, 2]] and targets[0] == 3 and targets[-1] == LETTERS - 1


def test_padded_runs_are_consecutive_letters_left_padded_with_zero():
    ids, targets = alphabet.framing_pairs(FRAMINGS[3], np.random.default_rng(3))
    lengths = set()
    for row, target in zip(ids[:, :, 0], targets):
        length = next(n for n in range(5, 0, -1)
                      if np.array_equal(row[5 - n:], np.arange(target - n, target)))
        assert np.all(row[:5 - length] == 0)  # padding is id 0 ('A'), as in the tutorial
        lengths.add(length)
    assert lengths == {1, 2, 3, 4, 5} and targets.max() <= LETTERS - 1


def _hard_gate_lstm(lstm: torch.nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """nn.LSTM's parameters run with Keras 1's hard_sigmoid gates; the last hidden state."""
    hidden = torch.zeros(1, lstm.hidden_size)
    cell = torch.zeros(1, lstm.hidden_size)
    for t in range(inputs.shape[1]):
        z = inputs[:, t] @ lstm.weight_ih_l0.T + hidden @ lstm.weight_hh_l0.T + lstm.bias_ih_l0
        i, f, g, o = z.chunk(4, dim=1)
        i, f, o = (torch.clamp(0.2 * gate + 0.5, 0.0, 1.0) for gate in (i, f, o))
        cell = f * cell + i * torch.tanh(g)
        hidden = o * torch.tanh(cell)
    return hidden


def _torch_reference(job: alphabet.Job, initial: dict, hard: bool) -> dict:
    """The same training with nn.LSTM, autograd and torch.optim.Adam (eps rescaled each step
    so that torch's eps-after-bias-correction equals Keras's eps-before)."""
    steps = job.ids.shape[1]
    table = torch.tensor(initial["table"], requires_grad=job.encoding == "embedding")
    lstm = torch.nn.LSTM(initial["w_ih"].shape[0], alphabet.HIDDEN, batch_first=True)
    head = torch.nn.Linear(alphabet.HIDDEN, LETTERS)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(initial["w_ih"].T))
        lstm.weight_hh_l0.copy_(torch.tensor(initial["w_hh"].T))
        lstm.bias_ih_l0.copy_(torch.tensor(initial["b"]))
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(torch.tensor(initial["w_out"].T))
        head.bias.copy_(torch.tensor(initial["b_out"]))
    lstm.bias_hh_l0.requires_grad_(False)  # Keras has one bias
    trained = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, head.weight, head.bias]
    trained += [table] if table.requires_grad else []
    optimizer = torch.optim.Adam(trained, lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    for step, pair in enumerate(job.order.tolist(), start=1):
        optimizer.param_groups[0]["eps"] = 1e-7 / math.sqrt(1 - 0.999 ** step)
        inputs = table[torch.tensor(job.ids[pair])].reshape(1, steps, -1)
        last = _hard_gate_lstm(lstm, inputs) if hard else lstm(inputs)[0][:, -1]
        loss = torch.nn.functional.cross_entropy(head(last), torch.tensor([int(job.targets[pair])]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"table": table, "w_ih": lstm.weight_ih_l0.T, "w_hh": lstm.weight_hh_l0.T,
            "b": lstm.bias_ih_l0, "w_out": head.weight.T, "b_out": head.bias}


@pytest.mark.parametrize("hard", [True, False], ids=["hard-sigmoid", "sigmoid"])
@pytest.mark.parametrize("framing", [FRAMINGS[1], FRAMINGS[2]], ids=["features", "time-steps"])
@pytest.mark.parametrize("encoding", alphabet.ENCODINGS)
def test_compiled_training_equals_pytorch_autograd_and_adam(framing, encoding, hard, monkeypatch):
    monkeypatch.setattr(alphabet, "HARD_GATES", hard)
    job = alphabet.make_job(framing, encoding, seed=4, epochs=2)  # 46 updates
    initial = {name: array.copy() for name, array in job.weights().items()}
    alphabet.train_jobs([job], threads=1)
    expected = _torch_reference(job, initial, hard)
    assert not np.array_equal(job.weights()["w_ih"], initial["w_ih"])  # it did train
    for name, array in job.weights().items():
        np.testing.assert_allclose(array, expected[name].detach().numpy(), rtol=1e-4, atol=2e-6,
                                   err_msg=name)


def test_training_many_at_once_equals_training_each_alone():
    def jobs():
        return [alphabet.make_job(framing, encoding, seed, epochs=3)
                for framing in FRAMINGS for encoding in alphabet.ENCODINGS for seed in (0, 1)]

    together = jobs()
    alphabet.train_jobs(together, threads=2)
    for alone, ensemble_member in zip(jobs(), together):
        alphabet.train_jobs([alone], threads=1)
        assert np.array_equal(alone.params, ensemble_member.params)
    assert not np.array_equal(together[0].params, together[1].params)  # each seed its own model


def test_seeds_change_the_initial_weights_and_the_order():
    first, second = (alphabet.make_job(FRAMINGS[0], "scalar", seed, epochs=2) for seed in (0, 1))
    assert not np.array_equal(first.params, second.params)
    assert not np.array_equal(first.order, second.order)
    assert sorted(first.order[:25].tolist()) == list(range(25))  # every pair once per epoch


def test_run_experiment_gives_a_row_per_framing_and_input(caplog):
    caplog.set_level("INFO", logger="chargen")
    result = alphabet.run_experiment(epochs=2, seeds=2, threads=2)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alphabet:")]
    assert [line.split(" of ")[0] for line in said] == [f"alphabet: {n}" for n in range(1, 17)]
    rows = result["rows"]
    assert [row["framing"] for row in rows] == [f.name for f in FRAMINGS] * 2
    assert [row["tutorial"] for row in rows[:4]] == [0.84, 0.8696, 1.0, 0.986]
    for row in rows:
        assert 0.0 <= row["min"] <= row["mean"] <= 1.0 and row["seconds"] >= 0.0


def test_cli_prints_the_table(capsys):
    assert main(["alphabet", "--epochs", "1", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    for framing in FRAMINGS:
        assert out.count(f"| {framing.name} |") == 2  # scalar and embedding rows
    assert "| 84.00% |" in out and "| 86.96% |" in out and "| 98.60% |" in out


def test_cli_json(capsys):
    assert main(["alphabet", "--epochs", "1", "--seeds", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["rows"]) == 8 and result["epochs"] == 1


def test_bad_counts_are_usage_errors(capsys):
    assert main(["alphabet", "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--seeds"):
        alphabet.run_experiment(epochs=1, seeds=0)


def test_missing_numba_is_a_one_line_error(monkeypatch):
    import chargen.experiments

    monkeypatch.delitem(sys.modules, "chargen.experiments.lstm_kernel")
    monkeypatch.delattr(chargen.experiments, "lstm_kernel")
    monkeypatch.setitem(sys.modules, "numba", None)
    with pytest.raises(ChargenError, match=r"pip install 'chargen\[experiments\]'"):
        alphabet.make_job(FRAMINGS[0], "scalar", 0, 1)
