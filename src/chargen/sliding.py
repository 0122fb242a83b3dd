"""Generation from window models, as the tutorials did it: keep the last `window` ids
(left-padded while the text is shorter), read the whole window from a zero state for every new
token, append the chosen id and slide. The padding id is outside the output vocabulary, so it
can never be produced. Every token costs `window` recurrent steps instead of the one that
stream and sequence models need (sampling.py); WindowPipeline runs those steps side by side
instead of one after another: the same logits, to the precision it computes in."""

from __future__ import annotations

import torch

from .decode import Decoder, decode_dtype
from .model import RNNLanguageModel

# The pipeline's rows are samples x window; up to these many it beat reading each window
# whole (a 1x256 LSTM over windows of 100 on 2 CPU cores, 300 tokens: bf16 3.1x at one sample,
# 1.3x at 4, 1.07x at 8; float32 1.8x at one, 1.0x at 2, 0.45x at 4; a 2x512 LSTM: bf16 5.4x
# at one sample, 1.8x at 4).
PIPELINE_MAX_ROWS = {torch.bfloat16: 800, None: 200, torch.qint8: 200}


def initial_windows(prompt: torch.Tensor, rows: int, window: int, pad_id: int) -> torch.Tensor:
    """(prompt_len,) ids -> (rows, window): the prompt's last `window` ids, left-padded."""
    tail = prompt[-window:]
    windows = torch.full((rows, window), pad_id, dtype=torch.long, device=prompt.device)
    windows[:, window - len(tail) :] = tail
    return windows


def window_logits(model: RNNLanguageModel, windows: torch.Tensor) -> torch.Tensor:
    """(rows, window) ids -> (rows, vocab) float32 logits of the token after each window."""
    return model(windows)[0][:, -1].float()


def slide(windows: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
    """Each row's window moved on by its new id."""
    return torch.cat([windows[:, 1:], next_ids[:, None]], dim=1)


class Rereading:
    """Reads each row's whole window again for every token: one forward pass over it."""

    def __init__(self, model: RNNLanguageModel, windows: torch.Tensor):
        self.model, self.windows = model, windows

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows, in this order (beam search's parents)."""
        self.windows = self.windows.index_select(0, rows)

    def push(self, next_ids: torch.Tensor) -> None:
        self.windows = slide(self.windows, next_ids)

    def logits(self) -> torch.Tensor:
        return window_logits(self.model, self.windows)


class WindowPipeline:
    """The same logits as Rereading at one batched decoding step per token. Each row keeps
    `window` windows in flight, started one token apart, each from a zero state: a new token
    is read by all of them in one step; the oldest has then read a whole window and gives the
    next token's logits, and its slot starts afresh with the token after. For unidirectional
    models reading their windows as time steps."""

    def __init__(self, model: RNNLanguageModel, windows: torch.Tensor, dtype: torch.dtype | None):
        self.rows, self.window = windows.shape
        slots = self.rows * self.window
        self.decoder = Decoder(model, dtype, rows=slots)
        self.layers = self.decoder.split_state(model.init_state(slots, windows.device))
        self.fed, self.top = 0, None
        for ids in windows[:, :-1].unbind(1):
            self._feed(ids)
        self.pending = windows[:, -1]

    def _feed(self, ids: torch.Tensor) -> None:
        slot = self.fed % self.window  # the slot whose window starts with this token
        for layer in self.layers:
            for state in layer if isinstance(layer, tuple) else (layer,):
                state.view(self.rows, self.window, -1)[:, slot] = 0
        self.layers, self.top = self.decoder.advance(ids.repeat_interleave(self.window), self.layers)
        self.fed += 1

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows, in this order, each with all its windows in flight."""
        def pick(state):
            kept = state.view(self.rows, self.window, -1).index_select(0, rows)
            return kept.reshape(len(rows) * self.window, -1)

        self.layers = [tuple(map(pick, layer)) if isinstance(layer, tuple) else pick(layer)
                       for layer in self.layers]
        self.rows = len(rows)

    def push(self, next_ids: torch.Tensor) -> None:
        self.pending = next_ids

    def logits(self) -> torch.Tensor:
        self._feed(self.pending)
        whole = self.fed % self.window  # the slot that has now read `window` tokens
        return self.decoder.head(self.top.view(self.rows, self.window, -1)[:, whole]).float()


def window_reader(model: RNNLanguageModel, windows: torch.Tensor, precision: str = "auto",
                  length: int | None = None, most_rows: int | None = None):
    """The faster of the two readers for these windows (rows, window), to read `length`
    tokens with up to `most_rows` rows (beams grow from one). The pipeline first reads the
    window token by token, so it pays from about a window's length of text on."""
    rows, window = most_rows or windows.size(0), windows.size(1)
    dtype = decode_dtype(windows.device, rows * window, model.config.hidden_size, precision)
    if (windows.device.type == "cpu" and model.framing.layout == "time-steps"
            and not model.config.bidirectional and (length is None or length >= window)
            and rows * window <= PIPELINE_MAX_ROWS.get(dtype, 0)):
        return WindowPipeline(model, windows, dtype)
    return Rereading(model, windows)
