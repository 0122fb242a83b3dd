import dataclasses

import pytest
import torch
from torch.nn import functional as F

from chargen.checkpoint import load_checkpoint, save_checkpoint
from chargen.config import ModelConfig, RunConfig
from chargen.errors import ConfigError
from chargen.model import RNNLanguageModel
from chargen.regularize import LockedDropout, RecurrentRegularizer, _fused

SMALL = ModelConfig(hidden_size=16, num_layers=2, embedding_dim=8, dropout=0.0)


def _ids(batch=3, time=7, vocab=11, seed=0):
    return torch.randint(0, vocab, (batch, time), generator=torch.Generator().manual_seed(seed))


def test_locked_dropout_uses_one_mask_for_every_time_step():
    torch.manual_seed(0)
    x = torch.ones(4, 10, 32)
    out = LockedDropout(0.5).train()(x)
    assert (out == out[:, :1]).all()  # same mask at every step
    assert (out == 0).any() and (out == 2).any()  # dropped and rescaled
    assert not (out[0] == out[1]).all()  # one mask per sequence (row)
    assert torch.equal(LockedDropout(0.5).eval()(x), x)


def test_locked_dropout_config_locks_the_output_and_between_layer_masks():
    model = RNNLanguageModel(dataclasses.replace(SMALL, dropout=0.3, locked_dropout=True), 11)
    assert isinstance(model.head_dropout, LockedDropout)
    assert isinstance(model.regularizer.between_dropout, LockedDropout)
    assert model.regularizer.locked_between


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_by_layer_path_equals_the_module_without_dropout(cell):
    torch.manual_seed(0)
    config = dataclasses.replace(SMALL, cell=cell, locked_dropout=True, num_layers=3)
    model = RNNLanguageModel(config, 11).train()
    x = model.embedding(_ids())
    state = model.init_state(3)
    expected, expected_state = model.rnn(x, state)
    got, got_state = model.regularizer._layer_by_layer(model.rnn, x, state)  # dropout is 0
    torch.testing.assert_close(got, expected)
    for a, b in zip(got_state if cell == "lstm" else [got_state],
                    expected_state if cell == "lstm" else [expected_state]):
        torch.testing.assert_close(a, b)


def test_fused_call_with_the_modules_weights_equals_the_module():
    torch.manual_seed(0)
    model = RNNLanguageModel(SMALL, 11)
    x = model.embedding(_ids())
    state = model.init_state(3)
    expected, _ = model.rnn(x, state)
    got, _ = _fused(model.rnn, x, state, list(model.rnn._flat_weights), 2, 0.0)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_is_stochastic_in_training_and_exact_in_eval(cell):
    torch.manual_seed(0)
    dropped = RNNLanguageModel(dataclasses.replace(SMALL, cell=cell, weight_drop=0.5), 11)
    plain = RNNLanguageModel(dataclasses.replace(SMALL, cell=cell), 11)
    plain.load_state_dict(dropped.state_dict())  # same keys: checkpoints stay compatible
    ids = _ids()
    dropped.eval()
    with torch.no_grad():
        first, second = dropped(ids)[0], dropped(ids)[0]
        assert torch.equal(first, second)
        torch.testing.assert_close(first, plain.eval()(ids)[0])
    dropped.train()
    torch.manual_seed(1)
    a = dropped(ids)[0]
    torch.manual_seed(2)
    b = dropped(ids)[0]
    assert not torch.allclose(a, b)
    a.sum().backward()
    assert dropped.rnn.weight_hh_l0.grad is not None and dropped.rnn.weight_hh_l0.grad.abs().sum() > 0


def test_weight_drop_runs_the_fused_kernel():
    model = RNNLanguageModel(dataclasses.replace(SMALL, weight_drop=0.3), 11).train()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model(_ids())
    names = [event.name for event in prof.events()]
    assert "aten::lstm" in names
    assert "aten::lstm_cell" not in names  # not unrolled step by step


def test_weight_drop_and_locked_dropout_train():
    torch.manual_seed(0)
    config = dataclasses.replace(SMALL, dropout=0.2, locked_dropout=True, weight_drop=0.3,
                                 embedding_dropout=0.1)
    model = RNNLanguageModel(config, 5).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    ids = torch.arange(40).remainder(5).view(2, 20)  # a cycle: easy to learn
    losses = []
    for _ in range(25):
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_embedding_dropout_only_in_training():
    torch.manual_seed(0)
    model = RNNLanguageModel(dataclasses.replace(SMALL, embedding_dropout=0.5), 11)
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(model.eval()(ids)[0], model(ids)[0])
        assert not torch.allclose(model.train()(ids)[0], model.eval()(ids)[0])


def test_tied_weights_are_one_tensor_and_survive_a_checkpoint(tmp_path):
    config = dataclasses.replace(SMALL, embedding_dim=16, tie_weights=True)
    model = RNNLanguageModel(config, 11)
    assert model.head.weight is model.embedding.weight
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in RNNLanguageModel(dataclasses.replace(config, tie_weights=False), 11)
        .parameters())
    save_checkpoint(tmp_path / "w.safetensors", model.state_dict())
    loaded = RNNLanguageModel(config, 11)
    loaded.load_state_dict(load_checkpoint(tmp_path / "w.safetensors")[0])
    assert loaded.head.weight is loaded.embedding.weight
    assert torch.equal(loaded.embedding.weight, model.embedding.weight)


def test_tied_weights_need_matching_sizes():
    with pytest.raises(ConfigError, match="--embedding-dim 16"):
        dataclasses.replace(SMALL, tie_weights=True).validate()


def test_old_config_without_the_new_fields_loads_and_reproduces_the_old_model():
    old = {"model": {"cell": "lstm", "hidden_size": 16, "num_layers": 2, "embedding_dim": 8,
                     "dropout": 0.25}}
    config = RunConfig.from_dict(old).validate().model
    assert (config.locked_dropout, config.embedding_dropout, config.weight_drop,
            config.tie_weights) == (False, 0.0, 0.0, False)
    torch.manual_seed(0)
    model = RNNLanguageModel(config, 11).train()
    ids = _ids()
    torch.manual_seed(5)
    got = model(ids)[0]
    torch.manual_seed(5)  # the model before regularize.py: nn.LSTM, then element-wise dropout
    hidden, _ = model.rnn(model.embedding(ids))
    expected = model.head(F.dropout(hidden, 0.25, training=True))
    assert torch.equal(got, expected)


def test_regularizer_holds_no_parameters():
    assert list(RecurrentRegularizer(dataclasses.replace(SMALL, weight_drop=0.5)).parameters()) == []


def test_seq_len_jitter_needs_stream_batching():
    from chargen.config import DataConfig

    with pytest.raises(ConfigError, match="--seq-len-jitter"):
        DataConfig(batching="sequences", seq_len_jitter=0.2).validate()
    DataConfig(seq_len_jitter=0.2).validate()
