"""Adapting a model to a text while reading it (dynamic evaluation, after Krause et al., 2018):
the text is read in order as one stream, segment by segment; each segment is scored with the
weights as they are, then one gradient step on that segment's loss moves a copy of the weights
towards the text, and a decay pulls them back towards the trained ones. The model given is
never changed: the adapted weights live in a copy.

Scored this way, the loss of a text measures what the model can do with recent context beyond
its recurrent state (names, words and style that recur); adapting to a document before
sampling makes the samples follow it.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import numpy as np
import torch
from torch.nn import functional as F

from .config import AdaptConfig
from .errors import ConfigError
from .evaluate import Evaluation
from .model import RNNLanguageModel, detach_state


def adapted_copy(model: RNNLanguageModel, ids: np.ndarray, settings: AdaptConfig,
                 device: torch.device) -> tuple[RNNLanguageModel, Evaluation]:
    """A copy of `model` adapted to `ids` read in order, and the loss it scored on them as it
    read (each segment before the update it caused)."""
    net = copy.deepcopy(model).to(device)
    net.eval()  # no dropout: the updates follow the text, not noise
    params = [p for p in net.parameters() if p.requires_grad]
    trained = [p.detach().clone() for p in params]
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
    total, count, state = 0.0, 0, None
    with _rnn_backward_in_eval(device):
        for start in range(0, len(ids) - 1, settings.adapt_segment):
            x = ids[start : start + settings.adapt_segment]
            y = ids[start + 1 : start + settings.adapt_segment + 1]
            x = x[: len(y)]
            logits, state = net(x[None], state)
            loss = F.cross_entropy(logits[0].float(), y, reduction="sum")
            if not torch.isfinite(loss):
                raise ConfigError(f"adapting diverged after {count:,} tokens: lower --adapt-lr "
                                  f"(now {settings.adapt_lr:g})")
            total, count = total + loss.item(), count + len(y)
            net.zero_grad(set_to_none=False)
            (loss / len(y)).backward()
            _update(params, trained, settings.adapt_lr, settings.adapt_decay)
            state = detach_state(state)
    net.zero_grad(set_to_none=True)
    for param in params:
        param.requires_grad_(False)
    return net, Evaluation(nats=total / max(count, 1), tokens=count)


@torch.no_grad()
def _update(params: list[torch.Tensor], trained: list[torch.Tensor], lr: float,
            decay: float) -> None:
    for param, origin in zip(params, trained):
        if param.grad is not None:
            param.add_(param.grad, alpha=-lr)
        param.add_(origin - param, alpha=decay)


def _rnn_backward_in_eval(device: torch.device):
    """cuDNN refuses an RNN's backward pass in eval mode; its own kernels are used there."""
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return nullcontext()
