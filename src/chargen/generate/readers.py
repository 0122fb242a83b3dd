"""Readers (torch): what each row has read so far, and the logits of its next token.

Every reader has `logits` ((rows, vocab) float32, for the token after what was read), `push`
(each row reads its chosen id; the logits are then the next token's), `select` (keep some rows,
in an order: beam search's parents, or the rows a finished generation leaves) and `join`
(append another reader's rows: the server's batch).

StateReader carries the recurrent state of stream, sequence and document runs through the
one-token Decoder. Window runs generate as the tutorials did: keep the last `window` ids
(left-padded while the text is shorter) and read the whole window from a zero state for every
new token; the padding id is outside the output vocabulary, so it is never produced. Rereading
does exactly that (`window` recurrent steps per token); WindowPipeline runs those steps side by
side instead of one after another: the same logits, to the precision it computes in.
"""

from __future__ import annotations

import torch

from ..decode import Decoder, decode_dtype
from ..model import RNNLanguageModel, select_state

# The pipeline's rows are samples x window; up to these many it beat reading each window
# whole (a 1x256 LSTM over windows of 100 on 2 CPU cores, 300 tokens: bf16 3.1x at one sample,
# 1.3x at 4, 1.07x at 8; float32 1.8x at one, 1.0x at 2, 0.45x at 4; a 2x512 LSTM: bf16 5.4x
# at one sample, 1.8x at 4).
PIPELINE_MAX_ROWS = {torch.bfloat16: 800, None: 200, torch.qint8: 200}
PROMPT_CHUNK = 4096  # prompt tokens per forward pass: bounds memory for very long prompts


def consume_prompt(model: RNNLanguageModel, prompt: torch.Tensor):
    """(prompt_len,) ids -> the logits after the last one (1, vocab) and the state."""
    state = None
    for start in range(0, len(prompt), PROMPT_CHUNK):
        logits, state = model(prompt[start : start + PROMPT_CHUNK].view(1, -1), state)
    return logits[:, -1], state


class StateReader:
    """Each row's recurrent state (the Decoder's per-layer list), one decoder step per token.
    Rows start from the prompt's state, read once and repeated; or each from its own prompt
    (a list of one per row)."""

    def __init__(self, model: RNNLanguageModel, decoder: Decoder,
                 prompt: torch.Tensor | list[torch.Tensor], rows: int):
        self.decoder = decoder
        if isinstance(prompt, list):
            logits, state = _stack(consume_prompt(model, p) for p in prompt)
        else:
            logits, state = consume_prompt(model, prompt)
            index = torch.zeros(rows, dtype=torch.long, device=prompt.device)
            logits, state = logits.index_select(0, index), select_state(state, index)
        self.layers = decoder.split_state(state)
        self.logits = logits.float()

    def push(self, next_ids: torch.Tensor) -> None:
        self.logits, self.layers = self.decoder.step(next_ids, self.layers)

    def select(self, rows: torch.Tensor) -> None:
        self.logits = self.logits.index_select(0, rows)
        self.layers = [tuple(part.index_select(0, rows) for part in layer)
                       if isinstance(layer, tuple) else layer.index_select(0, rows)
                       for layer in self.layers]

    def join(self, other: StateReader) -> None:
        self.logits = torch.cat((self.logits, other.logits))
        self.layers = [tuple(torch.cat(parts) for parts in zip(mine, theirs))
                       if isinstance(mine, tuple) else torch.cat((mine, theirs))
                       for mine, theirs in zip(self.layers, other.layers)]


def _stack(read):
    """The (logits, state) of prompts read one by one, as rows of one batch."""
    logits, states = zip(*read)
    if isinstance(states[0], tuple):  # LSTM: (h, c), each (layers, 1, hidden)
        return torch.cat(logits), tuple(torch.cat(parts, dim=1) for parts in zip(*states))
    return torch.cat(logits), torch.cat(states, dim=1)


def initial_windows(prompt: torch.Tensor | list[torch.Tensor], rows: int, window: int,
                    pad_id: int) -> torch.Tensor:
    """(prompt_len,) ids -> (rows, window): the prompt's last `window` ids, left-padded (a list
    of prompts: one row each)."""
    if isinstance(prompt, list):
        return torch.cat([initial_windows(p, 1, window, pad_id) for p in prompt])
    tail = prompt[-window:]
    windows = torch.full((rows, window), pad_id, dtype=torch.long, device=prompt.device)
    windows[:, window - len(tail) :] = tail
    return windows


def window_logits(model: RNNLanguageModel, windows: torch.Tensor) -> torch.Tensor:
    """(rows, window) ids -> (rows, vocab) float32 logits of the token after each window."""
    return model(windows)[0][:, -1].float()


class Rereading:
    """Reads each row's whole window again for every token: one forward pass over it."""

    def __init__(self, model: RNNLanguageModel, windows: torch.Tensor):
        self.model, self.windows = model, windows
        self.logits = window_logits(model, windows)

    def push(self, next_ids: torch.Tensor) -> None:
        self.windows = torch.cat([self.windows[:, 1:], next_ids[:, None]], dim=1)
        self.logits = window_logits(self.model, self.windows)

    def select(self, rows: torch.Tensor) -> None:
        self.windows = self.windows.index_select(0, rows)
        self.logits = self.logits.index_select(0, rows)

    def join(self, other: Rereading) -> None:
        self.windows = torch.cat((self.windows, other.windows))
        self.logits = torch.cat((self.logits, other.logits))


class WindowPipeline:
    """The same logits as Rereading at one batched decoding step per token. Each row keeps
    `window` windows in flight, started one token apart, each from a zero state: a new token
    is read by all of them in one step; the oldest has then read a whole window and gives the
    next token's logits, and its slot starts afresh with the token after. For unidirectional
    models reading their windows as time steps. Its rows cannot join another reader's (their
    windows are at other points of their cycle)."""

    def __init__(self, model: RNNLanguageModel, windows: torch.Tensor, dtype: torch.dtype | None):
        self.rows, self.window = windows.shape
        slots = self.rows * self.window
        self.decoder = Decoder(model, dtype, rows=slots)
        self.layers = self.decoder.split_state(model.init_state(slots, windows.device))
        self.fed, self.top = 0, None
        for ids in windows[:, :-1].unbind(1):
            self._feed(ids)
        self.push(windows[:, -1])

    def _feed(self, ids: torch.Tensor) -> None:
        slot = self.fed % self.window  # the slot whose window starts with this token
        for layer in self.layers:
            for state in layer if isinstance(layer, tuple) else (layer,):
                state.view(self.rows, self.window, -1)[:, slot] = 0
        self.layers, self.top = self.decoder.advance(ids.repeat_interleave(self.window), self.layers)
        self.fed += 1

    def push(self, next_ids: torch.Tensor) -> None:
        self._feed(next_ids)
        whole = self.fed % self.window  # the slot that has now read `window` tokens
        self.logits = self.decoder.head(self.top.view(self.rows, self.window, -1)[:, whole]).float()

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows, in this order, each with all its windows in flight."""
        def pick(state):
            kept = state.view(self.rows, self.window, -1).index_select(0, rows)
            return kept.reshape(len(rows) * self.window, -1)

        self.layers = [tuple(map(pick, layer)) if isinstance(layer, tuple) else pick(layer)
                       for layer in self.layers]
        self.logits = self.logits.index_select(0, rows)
        self.rows = len(rows)


def reader_for(model: RNNLanguageModel, prompt: torch.Tensor, rows: int, precision: str = "auto",
               length: int | None = None, most_rows: int | None = None):
    """The reader for `rows` rows continuing `prompt` ((prompt_len,) ids on the model's device),
    to read `length` tokens with up to `most_rows` rows at once (beams grow from one)."""
    most_rows = most_rows or rows
    if not model.kind.windowed:
        device = prompt[0].device if isinstance(prompt, list) else prompt.device
        dtype = decode_dtype(device, most_rows, model.config.hidden_size, precision)
        return StateReader(model, Decoder(model, dtype, rows=most_rows), prompt, rows)
    return window_reader(model, initial_windows(prompt, rows, model.kind.window,
                                                model.kind.pad_id),
                         precision, length, most_rows)


def window_reader(model: RNNLanguageModel, windows: torch.Tensor, precision: str = "auto",
                  length: int | None = None, most_rows: int | None = None):
    """The faster of the two window readers for these windows (rows, window). The pipeline
    first reads the window token by token, so it pays from about a window's length of text on."""
    rows, window = most_rows or windows.size(0), windows.size(1)
    dtype = decode_dtype(windows.device, rows * window, model.config.hidden_size, precision)
    if (windows.device.type == "cpu" and model.kind.layout == "time-steps"
            and not model.config.bidirectional and (length is None or length >= window)
            and rows * window <= PIPELINE_MAX_ROWS.get(dtype, 0)):
        return WindowPipeline(model, windows, dtype)
    return Rereading(model, windows)
