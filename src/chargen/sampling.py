"""Sampling: small pure functions over logits, and one generator that yields text pieces.

The prompt is consumed in one forward pass; then one step per token with the state carried.
Several samples run as one batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .config import SampleConfig
from .decode import Decoder, decode_dtype
from .model import RNNLanguageModel, select_state
from .pieces import StopWatch, text_pieces  # noqa: F401 - StopWatch re-exported
from .sliding import initial_windows, window_reader


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits / temperature if temperature != 1.0 else logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (k=0 keeps all)."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    threshold = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of tokens whose probability reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above
    drop = before >= p
    drop[..., 0] = False  # the likeliest stays, even when p rounds to 0 in float32
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def choose_next(logits: torch.Tensor, config: SampleConfig, banned: Sequence[int],
                generator: torch.Generator | None) -> torch.Tensor:
    """(batch, vocab) logits -> (batch,) next ids."""
    bias = banned_bias(logits.size(-1), banned, logits.device)
    logits = logits.float()
    return _choose(logits if bias is None else logits + bias, config, generator)


def _choose(logits: torch.Tensor, config: SampleConfig, generator) -> torch.Tensor:
    if config.greedy or config.temperature == 0:
        return logits.argmax(dim=-1)
    logits = apply_temperature(logits, config.temperature)
    logits = top_p_filter(top_k_filter(logits, config.top_k), config.top_p)
    return sample_categorical(torch.softmax(logits, dim=-1), generator)


def sample_categorical(probs: torch.Tensor, generator=None) -> torch.Tensor:
    """One draw per row by inverting the cumulative distribution: a uniform number per row,
    scaled to the row's total mass, located with searchsorted (right side, so that
    zero-probability ids are never chosen). Three cheap ops where torch.multinomial takes
    ten or so; it matters when one token is drawn per step."""
    uniform = torch.rand(probs.shape[:-1] + (1,), generator=generator, device=probs.device,
                         dtype=probs.dtype)
    return invert_cdf(probs, uniform)


def invert_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """(batch, vocab) probabilities and (batch, 1) uniform numbers in [0, 1) -> (batch,) ids.
    The server draws each row's number from that request's own generator."""
    cdf = probs.cumsum(dim=-1)
    return torch.searchsorted(cdf, uniform * cdf[..., -1:], right=True).squeeze(-1)


def banned_bias(vocab_size: int, banned: Sequence[int], device) -> torch.Tensor | None:
    """An additive (vocab,) mask: -inf at the banned ids (built once, added every step)."""
    if not banned:
        return None
    bias = torch.zeros(vocab_size, device=device)
    bias[list(banned)] = float("-inf")
    return bias


PROMPT_CHUNK = 4096  # prompt tokens per forward pass: bounds memory for very long prompts


def consume_prompt(model: RNNLanguageModel, prompt: torch.Tensor):
    """(prompt_len,) ids -> the logits after the last one (1, vocab) and the state."""
    state = None
    for start in range(0, len(prompt), PROMPT_CHUNK):
        logits, state = model(prompt[start : start + PROMPT_CHUNK].view(1, -1), state)
    return logits[:, -1], state


@torch.inference_mode()
def generate_ids(model: RNNLanguageModel, prompt: torch.Tensor, config: SampleConfig,
                 banned: Sequence[int] = ()) -> Iterator[torch.Tensor]:
    """prompt: (prompt_len,) ids. Yields config.length tensors of shape (config.num,)."""
    if model.framing.windowed:  # no state to carry: slide the window instead
        yield from slide_ids(model, prompt, config, banned)
        return
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed if config.seed is not None else torch.seed())
    bias = banned_bias(model.vocab_size, banned, device)
    logits, state = consume_prompt(model, prompt.to(device))
    rows = torch.zeros(config.num, dtype=torch.long, device=device)
    logits, state = logits.index_select(0, rows), select_state(state, rows)
    decoder = Decoder(model, decode_dtype(device, config.num, model.config.hidden_size,
                                          config.precision), rows=config.num)
    layers = decoder.split_state(state)
    seen = None
    if config.repetition_penalty != 1.0:
        seen = torch.zeros(config.num, model.vocab_size, dtype=torch.bool, device=device)
        seen[:, prompt.to(device)] = True
    for _ in range(config.length):
        if seen is not None:
            logits = penalize_repetition(logits, seen, config.repetition_penalty)
        next_ids = _choose(logits if bias is None else logits + bias, config, generator)
        if seen is not None:
            seen[torch.arange(config.num, device=device), next_ids] = True
        logits, layers = decoder.step(next_ids, layers)
        yield next_ids


def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: the logits of ids already in the text are divided by
    `penalty` when positive and multiplied by it when negative (penalty > 1 discourages)."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


@torch.inference_mode()
def slide_ids(model: RNNLanguageModel, prompt: torch.Tensor, config: SampleConfig,
              banned: Sequence[int] = ()) -> Iterator[torch.Tensor]:
    """Like generate_ids, for window models. Yields config.length (num,) tensors."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed if config.seed is not None else torch.seed())
    bias = banned_bias(model.vocab_size, banned, device)
    prompt = prompt.to(device)
    reader = window_reader(model, initial_windows(prompt, config.num, model.framing.window,
                                                  model.framing.pad_id),
                           config.precision, config.length)
    seen = None
    if config.repetition_penalty != 1.0:
        seen = torch.zeros(config.num, model.vocab_size, dtype=torch.bool, device=device)
        seen[:, prompt] = True
    rows = torch.arange(config.num, device=device)
    for _ in range(config.length):
        logits = reader.logits()
        if seen is not None:
            logits = penalize_repetition(logits, seen, config.repetition_penalty)
        next_ids = _choose(logits if bias is None else logits + bias, config, generator)
        if seen is not None:
            seen[rows, next_ids] = True
        reader.push(next_ids)
        yield next_ids


def generate_text(model: RNNLanguageModel, tokenizer, prompt_ids: torch.Tensor,
                  config: SampleConfig) -> Iterator[list[str]]:
    """Yields, per step, one text piece per sample (see pieces.text_pieces)."""
    id_rows = (ids.tolist() for ids in generate_ids(model, prompt_ids, config, tokenizer.never_sample))
    if getattr(tokenizer, "end_id", None) is not None:  # a document run: stop at [end]
        from .documents import until_end

        id_rows = until_end(id_rows, tokenizer.end_id)
    yield from text_pieces(id_rows, tokenizer, config)
