"""Generation from a trained model on torch: its run's reader, stepped by the one loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..config import SampleConfig
from ..model import RNNLanguageModel
from .engine import Engine, Generation, generate_alone
from .logits import TorchOps
from .readers import reader_for


def generate_text(model: RNNLanguageModel, tokenizer, prompt: torch.Tensor | list[torch.Tensor],
                  config: SampleConfig) -> Iterator[list[str]]:
    """prompt: (prompt_len,) ids, or a list of config.num such prompts (one per sample).
    Yields, per step that makes text, one piece per sample (a sample's piece is empty once it
    has met a stop sequence or a document's end)."""
    yield from _generate(model, tokenizer, prompt, config, "pieces")


class _IdsOnly:
    """Stands in for a tokenizer where only the ids are wanted."""

    stream_decoder = None  # no text is made

    def __init__(self, banned: Sequence[int]):
        self.never_sample = list(banned)


def generate_ids(model: RNNLanguageModel, prompt: torch.Tensor, config: SampleConfig,
                 banned: Sequence[int] = ()) -> Iterator[torch.Tensor]:
    """The same loop as generate_text, without a tokenizer: yields config.length (num,) id
    tensors (stop sequences need text and are not applied)."""
    yield from _generate(model, _IdsOnly(banned), prompt, config, "ids")


@torch.inference_mode()
def _generate(model: RNNLanguageModel, tokenizer, prompt: torch.Tensor, config: SampleConfig,
              wanted: str) -> Iterator:
    model.eval()
    device = next(model.parameters()).device
    prompt = [p.to(device) for p in prompt] if isinstance(prompt, list) else prompt.to(device)
    reader = reader_for(model, prompt, config.num, config.precision, config.length)
    engine = Engine(TorchOps(device), model.kind, tokenizer)
    yield from generate_alone(engine, Generation(prompt, config), reader, wanted)
