"""One-token decoding steps: one matrix product per layer, the gate arithmetic by hand.

A full nn.LSTM/GRU call per token pays for sequence machinery (oneDNN's multi-layer RNN costs
~6 ms per call on CPU whatever the batch), and ATen's per-layer cell op runs the input and
hidden products separately, then the gates in a dozen small ops. Here the first layer's input
product is a table looked up per id (input table x weight_ih + bias, computed once), so that
layer costs one product; an LSTM's other layers multiply [input, h] by [weight_ih | weight_hh]
in one product too; the LSTM gates are reordered (i, f, o, g) so that one sigmoid covers
three of them. On CPU the weights are packed once into oneDNN's blocked layout: addmm repacks
them on every call, which made a 64 x 256 x 1024 product 2.4x slower in fp32 and 1.3x in bf16
on this project's 2-core machine (3.5x and 3.4x at batch 1 for 1024 x 3072). With many rows or
big layers, bf16 copies of the weights run the products 2-4x faster on CPUs with bf16 units.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
from torch.nn import functional as F

from .errors import ConfigError
from .model import RNNLanguageModel, State
from .runtime import bf16_is_fast

# bf16 pays once batch x hidden reaches this (2x512 at batch 1: 4,471 chars/s in bf16 against
# 2,125 in fp32; 1x256 at batch 1 is overhead-bound and no faster in bf16).
BF16_MIN_WORK = 512
# Packing pays once rows x weight entries reaches this (1x256 at batch 1 ran 7k chars/s packed
# against 11k with addmm; at batch 64, 126k against 61k).
MIN_PACKED_WORK = 1 << 20
# The first layer's gate table has (input ids x gates) entries; beyond this (word vocabularies)
# the embedding is looked up and multiplied per step instead.
MAX_TABLE_ENTRIES = 1 << 22

Product = Callable[..., torch.Tensor]  # (x[, added]) -> x @ weight.T (+ bias) (+ added)


# int8 products: only for weights this large. Smaller ones lose to packed fp32 at batch 1 (AVX2
# emulation): a 65 x 512 output layer ran 13x slower, and 1x256 sampling (its 1024 x 256
# product in int8) 0.65x; 2x512 and a 1024 GRU ran 1.5x and 1.4x faster.
MIN_INT8_WEIGHTS = 1 << 19


def decode_dtype(device: torch.device, batch: int, hidden: int, precision: str = "auto"):
    """The decoder's weight type: bf16, torch.qint8 (int8 weights, float activations) or
    None (the model's float32). `auto`: bf16 where the hardware runs it fast; else int8 on
    x86 CPUs for layers whose recurrent product is large enough to gain (2x512 and a 1024 GRU
    sampled 1.5x faster at batch 1 and 2.0-2.2x at batch 64 on AVX2, validation loss within
    0.0002 nats/char of fp32: benchmarks/RESULTS.md); else fp32."""
    if precision == "int8":
        if device.type != "cpu":
            raise ConfigError("--precision int8 runs on the CPU (fbgemm or qnnpack); use "
                              "--device cpu, or another precision on a GPU")
        return torch.qint8
    if precision != "auto":
        return None
    if bf16_is_fast(device):
        return torch.bfloat16 if batch * hidden >= BF16_MIN_WORK else None
    if device.type == "cpu" and 4 * hidden * hidden >= MIN_INT8_WEIGHTS and _fbgemm_present():
        return torch.qint8
    return None


@functools.cache
def _fbgemm_present() -> bool:
    """x86's int8 engine (the one measured; ARM's qnnpack is not, so it is not chosen there)."""
    return any(name in torch.backends.quantized.supported_engines for name in ("x86", "fbgemm"))


class Decoder:
    """step(ids, layers) -> (float32 logits, layers). Inside the decoder and the readers the
    state is a list, one entry per layer ((h, c) for an LSTM, h for a GRU, each (batch,
    hidden)); split_state makes it from the model's (layers, batch, hidden) state."""

    def __init__(self, model: RNNLanguageModel, dtype: torch.dtype | None = None, rows: int = 1):
        self.lstm = model.config.cell == "lstm"
        self.hidden, self.num_layers = model.config.hidden_size, model.config.num_layers
        int8 = dtype == torch.qint8  # int8 weights; the state and gates stay float32
        self.dtype = model.input_table().dtype if int8 or dtype is None else dtype
        device = model.head.weight.device
        layers = [_layer_weights(model, layer, self.lstm) for layer in range(self.num_layers)]
        inputs, first = model.input_table().detach(), layers[0]
        self.input_gates = None
        if inputs.size(0) * first["w_ih"].size(0) <= MAX_TABLE_ENTRIES:
            self.input_gates = F.linear(inputs, first["w_ih"], first["b_ih"]).to(self.dtype)
        else:
            self.inputs = inputs.to(self.dtype)

        def product(weight, bias=None):
            if int8 and weight.numel() >= MIN_INT8_WEIGHTS:
                return int8_product(weight, bias)
            return linear_product(weight.to(self.dtype), None if bias is None else bias.to(self.dtype),
                                  device, rows)

        def reads_table(index):
            return index == 0 and self.input_gates is not None

        if self.lstm:
            # A layer fed by a product multiplies [below, h] by [w_ih | w_hh] in one product:
            # 1.08x the two products for 2x512 at batch 1, 1.04-1.07x at batch 64 (2x512, 3x1024).
            self.gate_products = [product(layer["w_hh"]) if reads_table(index) else
                                  product(torch.cat([layer["w_ih"], layer["w_hh"]], 1), layer["b_ih"])
                                  for index, layer in enumerate(layers)]
        else:
            self.input_products = [None if reads_table(index) else product(layer["w_ih"], layer["b_ih"])
                                   for index, layer in enumerate(layers)]
            self.hidden_products = [product(layer["w_hh"], layer["b_hh"]) for layer in layers]
        self.head = product(model.head.weight.detach(), model.head.bias.detach())

    def split_state(self, state: State) -> list:
        if self.lstm:
            h, c = state
            return [(h[i].to(self.dtype), c[i].to(self.dtype)) for i in range(self.num_layers)]
        return [state[i].to(self.dtype) for i in range(self.num_layers)]

    def step(self, ids: torch.Tensor, layers: list) -> tuple[torch.Tensor, list]:
        layers, top = self.advance(ids, layers)
        return self.head(top).float(), layers

    def advance(self, ids: torch.Tensor, layers: list) -> tuple[list, torch.Tensor]:
        """step without the output layer: (layers, the top layer's output (batch, hidden))."""
        new_layers, below = [], None
        for index, state in enumerate(layers):
            if index == 0:  # the first layer's input gates when read from the table
                below = F.embedding(ids, self.inputs if self.input_gates is None else self.input_gates)
            state = (self._lstm(index, below, state) if self.lstm
                     else self._gru(index, below, state))
            new_layers.append(state)
            below = state[0] if self.lstm else state
        return new_layers, below

    def _lstm(self, index: int, below: torch.Tensor, state):
        h, c = state
        size = self.hidden
        if index == 0 and self.input_gates is not None:
            gates = self.gate_products[0](h, below)
        else:
            gates = self.gate_products[index](torch.cat([below, h], 1))
        ifo = gates[:, : 3 * size].sigmoid()
        c = torch.addcmul(ifo[:, size : 2 * size] * c, ifo[:, :size], gates[:, 3 * size :].tanh())
        return ifo[:, 2 * size :] * c.tanh(), c

    def _gru(self, index: int, below: torch.Tensor, h):
        size = self.hidden
        input_product = self.input_products[index]
        input_gates = below if input_product is None else input_product(below)
        hidden_gates = self.hidden_products[index](h)
        rz = (input_gates[:, : 2 * size] + hidden_gates[:, : 2 * size]).sigmoid()
        n = torch.addcmul(input_gates[:, 2 * size :], rz[:, :size], hidden_gates[:, 2 * size :]).tanh()
        return torch.addcmul(n, rz[:, size:], h - n)


def _layer_weights(model: RNNLanguageModel, layer: int, lstm: bool) -> dict[str, torch.Tensor]:
    """One layer's (out, in) weights; an LSTM's gates reordered to (i, f, o, g) and its two
    biases folded into one (a GRU's hidden bias sits inside r * (...), so it stays apart)."""
    w_ih, w_hh, b_ih, b_hh = (getattr(model.rnn, f"{name}_l{layer}").detach()
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    if not lstm:
        return {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}
    size = model.config.hidden_size
    order = torch.cat([torch.arange(0, 2 * size), torch.arange(3 * size, 4 * size),
                       torch.arange(2 * size, 3 * size)]).to(w_ih.device)
    return {"w_ih": w_ih[order], "w_hh": w_hh[order], "b_ih": (b_ih + b_hh)[order]}


def linear_product(weight: torch.Tensor, bias: torch.Tensor | None, device: torch.device,
                   rows: int = 1) -> Product:
    """x -> x @ weight.T + bias (+ added, when given). On CPU, for big enough products, the
    weight is packed once for oneDNN (rows: the batch expected; any batch works); else addmm."""
    if (device.type == "cpu" and rows * weight.numel() >= MIN_PACKED_WORK
            and _onednn_packing_works(weight.dtype)):
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

        def packed_product(x, added=None):
            if added is None:
                return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, added, packed, bias, "add")

        return packed_product
    transposed = weight.t()

    def plain_product(x, added=None):
        if added is None:
            return F.linear(x, weight, bias)
        return torch.addmm(added if bias is None else added + bias, x, transposed)

    return plain_product


def int8_product(weight: torch.Tensor, bias: torch.Tensor | None) -> Product:
    """x -> x @ weight.T + bias (+ added), the weight quantised to int8 per output row and the
    input per call (torch.ao's dynamic quantisation: fbgemm on x86, qnnpack on ARM)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    linear = torch.nn.Linear(weight.size(1), weight.size(0), bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight.float())
        if bias is not None:
            linear.bias.copy_(bias.float())
    linear.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # torch marks quantised tensor types for a later removal
        warnings.simplefilter("ignore", UserWarning)
        quantized = DynamicLinear.from_float(linear)

    def product(x, added=None):
        out = quantized(x)
        return out if added is None else out + added

    return product


@functools.cache
def _onednn_packing_works(dtype: torch.dtype) -> bool:
    """Whether this torch build packs linear weights for oneDNN (x86 and most ARM CPU wheels
    do) and gets a product right in `dtype`."""
    try:
        weight, x = torch.ones(8, 4, dtype=dtype), torch.ones(2, 4, dtype=dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 2)
        out = torch.ops.mkldnn._linear_pointwise.binary(x, x.new_ones(2, 8), packed, None, "add")
        return bool((out.float() == 5).all())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
