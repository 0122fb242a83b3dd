"""Generation from window models, as the tutorials did it: keep the last `window` ids
(left-padded while the text is shorter), run the model over the whole window for every new
token, append the chosen id and slide. The padding id is outside the output vocabulary, so it
can never be produced. Far slower than the stateful one-step path (sampling.py) that stream
and sequence models use: every token costs `window` recurrent steps instead of one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .config import SampleConfig
from .model import RNNLanguageModel


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


@torch.inference_mode()
def slide_ids(model: RNNLanguageModel, prompt: torch.Tensor, config: SampleConfig,
              banned: Sequence[int] = ()) -> Iterator[torch.Tensor]:
    """Like sampling.generate_ids, for window models. Yields config.length (num,) tensors."""
    from .sampling import _choose, banned_bias, penalize_repetition

    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed if config.seed is not None else torch.seed())
    bias = banned_bias(model.vocab_size, banned, device)
    prompt = prompt.to(device)
    windows = initial_windows(prompt, config.num, model.framing.window, model.framing.pad_id)
    seen = None
    if config.repetition_penalty != 1.0:
        seen = torch.zeros(config.num, model.vocab_size, dtype=torch.bool, device=device)
        seen[:, prompt] = True
    rows = torch.arange(config.num, device=device)
    for _ in range(config.length):
        logits = window_logits(model, windows)
        if seen is not None:
            logits = penalize_repetition(logits, seen, config.repetition_penalty)
        next_ids = _choose(logits if bias is None else logits + bias, config, generator)
        if seen is not None:
            seen[rows, next_ids] = True
        windows = slide(windows, next_ids)
        yield next_ids
