import pytest
import torch
from torch.nn import functional as F

from chargen import decode
from chargen.config import ModelConfig
from chargen.decode import int8_product
from chargen.errors import ConfigError
from chargen.model import RNNLanguageModel, count_parameters, detach_state, select_state


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_whole_sequence_equals_one_token_at_a_time(cell):
    torch.manual_seed(0)
    model = RNNLanguageModel(ModelConfig(cell=cell, hidden_size=24, num_layers=2,
                                         embedding_dim=8, dropout=0.3), vocab_size=11).eval()
    ids = torch.randint(0, 11, (3, 17))
    whole, whole_state = model(ids)
    state, steps = None, []
    for t in range(ids.size(1)):
        logits, state = model(ids[:, t : t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-5, atol=1e-5)
    for a, b in zip(state if cell == "lstm" else (state,), whole_state if cell == "lstm" else (whole_state,)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_shapes_and_initial_state():
    model = RNNLanguageModel(ModelConfig(hidden_size=16, num_layers=3, embedding_dim=4), 9)
    logits, (h, c) = model(torch.zeros(2, 5, dtype=torch.long))
    assert logits.shape == (2, 5, 9) and h.shape == c.shape == (3, 2, 16)
    zero = model.init_state(2)
    explicit, _ = model(torch.zeros(2, 5, dtype=torch.long), zero)
    torch.testing.assert_close(model.eval()(torch.zeros(2, 5, dtype=torch.long))[0],
                               model(torch.zeros(2, 5, dtype=torch.long), zero)[0])
    assert explicit.shape == logits.shape
    assert count_parameters(model) > 0


def test_state_helpers():
    h = torch.randn(2, 4, 3, requires_grad=True)
    state = (h * 2, h * 3)
    detached = detach_state(state)
    assert all(not s.requires_grad for s in detached)
    picked = select_state(detached, torch.tensor([1, 1, 3]))
    assert picked[0].shape == (2, 3, 3)
    assert torch.equal(picked[1][:, 0], detached[1][:, 1])
    assert detach_state(None) is None


def test_tiny_model_overfits_a_short_text():
    torch.manual_seed(0)
    text = "hello world, hello chargen. "
    vocab = sorted(set(text))
    ids = torch.tensor([[vocab.index(c) for c in text * 4]])
    model = RNNLanguageModel(ModelConfig(hidden_size=64, num_layers=1, embedding_dim=16,
                                         dropout=0.0), len(vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("path", ["packed", "addmm", "no-table"])
def test_decoding_step_equals_the_full_forward(cell, path, monkeypatch):
    if path == "addmm":  # the product where oneDNN cannot pack weights (and on GPUs)
        monkeypatch.setattr(decode, "_onednn_packing_works", lambda dtype: False)
    if path == "packed":  # products this small are not packed unless told to
        if not decode._onednn_packing_works(torch.float32):
            pytest.skip("this torch build cannot pack linear weights for oneDNN")
        monkeypatch.setattr(decode, "MIN_PACKED_WORK", 0)
    if path == "no-table":  # a word vocabulary too large for the first layer's gate table
        monkeypatch.setattr(decode, "MAX_TABLE_ENTRIES", 0)
    torch.manual_seed(1)
    model = RNNLanguageModel(ModelConfig(cell=cell, hidden_size=20, num_layers=3,
                                         embedding_dim=6), vocab_size=9).eval()
    ids = torch.randint(0, 9, (4, 12))
    with torch.no_grad():
        expected, _ = model(ids)
        _, state = model(ids[:, :1])
        decoder = decode.Decoder(model)
        layers = decoder.split_state(state)
        for t in range(1, ids.size(1)):
            logits, layers = decoder.step(ids[:, t], layers)
            torch.testing.assert_close(logits, expected[:, t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("packed", [True, False])
def test_bf16_decoding_stays_close_to_fp32(cell, packed, monkeypatch):
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no bf16 support in oneDNN")
    if packed and not decode._onednn_packing_works(torch.bfloat16):
        pytest.skip("this torch build cannot pack bf16 linear weights for oneDNN")
    monkeypatch.setattr(decode, "MIN_PACKED_WORK", 0 if packed else 1 << 62)
    torch.manual_seed(2)
    model = RNNLanguageModel(ModelConfig(cell=cell, hidden_size=64, num_layers=2), vocab_size=30).eval()
    ids = torch.randint(0, 30, (8, 20))
    with torch.no_grad():
        expected, _ = model(ids)
        decoder = decode.Decoder(model, torch.bfloat16, rows=8)
        layers = decoder.split_state(model.init_state(8))
        for t in range(ids.size(1)):
            logits, layers = decoder.step(ids[:, t], layers)
            assert logits.dtype == torch.float32
            torch.testing.assert_close(logits, expected[:, t], rtol=0.05, atol=0.05)


def _int8_engine() -> bool:
    return any(engine in torch.backends.quantized.supported_engines
               for engine in ("x86", "fbgemm", "qnnpack"))


@pytest.mark.skipif(not _int8_engine(), reason="this torch build has no int8 engine")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_int8_decoding_stays_close_to_fp32_and_quantises_the_large_products(cell, monkeypatch):
    monkeypatch.setattr(decode, "MIN_INT8_WEIGHTS", 64 * 64)  # the layers, not the output
    quantised = []
    monkeypatch.setattr(decode, "int8_product", lambda w, b: quantised.append(w.shape)
                        or int8_product(w, b))
    torch.manual_seed(2)
    model = RNNLanguageModel(ModelConfig(cell=cell, hidden_size=64, num_layers=2), vocab_size=30).eval()
    ids = torch.randint(0, 30, (8, 20))
    with torch.no_grad():
        expected, _ = model(ids)
        decoder = decode.Decoder(model, decode.decode_dtype(torch.device("cpu"), 8, 64, "int8"))
        layers = decoder.split_state(model.init_state(8))
        for t in range(ids.size(1)):
            logits, layers = decoder.step(ids[:, t], layers)
            assert logits.dtype == torch.float32
            torch.testing.assert_close(logits, expected[:, t], rtol=0.05, atol=0.05)
    assert quantised and all(rows * cols >= 64 * 64 for rows, cols in quantised)
    assert (30, 64) not in quantised  # the small output layer stays float


@pytest.mark.parametrize("bf16, hidden, batch, expected", [
    (True, 512, 1, torch.bfloat16), (True, 256, 1, None), (False, 512, 1, torch.qint8),
    (False, 1024, 64, torch.qint8), (False, 256, 64, None)])
def test_auto_decoding_precision(monkeypatch, bf16, hidden, batch, expected):
    monkeypatch.setattr(decode, "bf16_is_fast", lambda device: bf16)
    if expected == torch.qint8 and not decode._fbgemm_present():
        expected = None  # not an x86 build: int8 is never chosen by itself
    assert decode.decode_dtype(torch.device("cpu"), batch, hidden) is expected
    assert decode.decode_dtype(torch.device("cpu"), batch, hidden, "fp32") is None


def test_int8_decoding_is_refused_off_the_cpu():
    with pytest.raises(ConfigError, match="int8 runs on the CPU"):
        decode.decode_dtype(torch.device("cuda"), 1, 64, "int8")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_keras_initialisation(cell):
    torch.manual_seed(3)
    model = RNNLanguageModel(ModelConfig(cell=cell, hidden_size=16, num_layers=2,
                                         embedding_dim=4, init="keras"), vocab_size=7)
    gates = 4 if cell == "lstm" else 3
    for layer, width in ((0, 4), (1, 16)):
        w_ih = getattr(model.rnn, f"weight_ih_l{layer}")
        assert w_ih.abs().max() <= (6 / (width + 16)) ** 0.5  # glorot, fan-out one gate
        for gate in getattr(model.rnn, f"weight_hh_l{layer}").detach().split(16):
            torch.testing.assert_close(gate.T @ gate, 1.21 * torch.eye(16), atol=1e-5, rtol=0)
        bias = getattr(model.rnn, f"bias_ih_l{layer}").detach().view(gates, 16)
        expected = torch.zeros(gates, 16)
        if cell == "lstm":
            expected[1] = 1.0  # the forget gate
        assert torch.equal(bias, expected)
        assert not getattr(model.rnn, f"bias_hh_l{layer}").any()
    assert not model.head.bias.any() and model.embedding.weight.abs().max() <= 0.05
    default = RNNLanguageModel(ModelConfig(cell=cell, hidden_size=16, num_layers=2,
                                           embedding_dim=4), vocab_size=7)
    assert default.rnn.bias_ih_l0.abs().max() < 0.25  # PyTorch's +-1/sqrt(16)
