"""Beam search: the likeliest continuations of a prompt, rather than samples.

All live beams advance together as one batch through the reader their sampling uses
(generate/readers.py: the one-token Decoder, or a window model's windows). Every live beam
has the same length, so within a step they are ranked by total log-probability; a beam that
meets a stop sequence is finished and kept aside. Finished beams differ in length: with
`length_norm` they are ranked by log-probability per token, otherwise in total (which favours
the shorter, and lets the search end early once no live beam can overtake them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config import SampleConfig
from ..model import RNNLanguageModel
from .logits import banned_bias, penalize_repetition
from .readers import reader_for


@dataclass(frozen=True)
class Hypothesis:
    ids: tuple[int, ...]
    log_prob: float  # natural log, summed over the ids
    text: str  # the decoded ids, cut before a stop sequence

    def rank(self, length_norm: bool) -> float:
        return self.log_prob / max(len(self.ids), 1) if length_norm else self.log_prob


def _stop_cut(text: str, stops: Sequence[str]) -> int | None:
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(cuts) if cuts else None


class _Beams:
    """The live beams: their ids and scores, and the reader that scores each one's next token."""

    def __init__(self, model: RNNLanguageModel, prompt: torch.Tensor, config: SampleConfig):
        device = next(model.parameters()).device
        prompt = prompt.to(device)
        self.ids: list[tuple[int, ...]] = [()]
        self.scores = torch.zeros(1, device=device)
        self.seen = None
        if config.repetition_penalty != 1.0:
            self.seen = torch.zeros(1, model.vocab_size, dtype=torch.bool, device=device)
            self.seen[:, prompt] = True
        self.reader = reader_for(model, prompt, 1, config.precision, config.length, config.beam)

    def candidates(self, bias, penalty: float) -> torch.Tensor:
        """(live, vocab) total log-probability of every one-token extension."""
        logits = self.reader.logits
        if self.seen is not None:
            logits = penalize_repetition(logits, self.seen, penalty)
        logits = logits if bias is None else logits + bias
        return self.scores[:, None] + torch.log_softmax(logits.float(), dim=-1)

    def advance(self, parents: list[int], tokens: list[int], scores: list[float]) -> None:
        device = self.scores.device
        rows = torch.tensor(parents, dtype=torch.long, device=device)
        next_ids = torch.tensor(tokens, dtype=torch.long, device=device)
        self.ids = [self.ids[p] + (t,) for p, t in zip(parents, tokens)]
        self.scores = torch.tensor(scores, device=device)
        if self.seen is not None:
            self.seen = self.seen.index_select(0, rows)
            self.seen[torch.arange(len(tokens), device=device), next_ids] = True
        self.reader.select(rows)
        self.reader.push(next_ids)


@torch.inference_mode()
def beam_search(model: RNNLanguageModel, tokenizer, prompt: torch.Tensor,
                config: SampleConfig) -> list[Hypothesis]:
    """prompt: (prompt_len,) ids. -> the config.num best continuations of up to config.length
    tokens, best first."""
    model.eval()
    banned = tokenizer.never_sample
    width = min(config.beam, model.vocab_size - len(banned))
    bias = banned_bias(model.vocab_size, banned, prompt.device)
    beams = _Beams(model, prompt, config)
    bias = None if bias is None else bias.to(beams.scores.device)
    finished: list[Hypothesis] = []
    end_id = model.kind.end_id  # a document run's [end] finishes a beam
    for _ in range(config.length):
        totals = beams.candidates(bias, config.repetition_penalty)
        top = torch.topk(totals.flatten(), min(2 * width, totals.numel()))
        parents, tokens, scores = [], [], []
        for score, flat in zip(top.values.tolist(), top.indices.tolist()):
            parent, token = divmod(flat, totals.size(1))
            if score == float("-inf") or len(parents) == width:
                break
            ids = beams.ids[parent] + (token,)
            if token == end_id:
                finished.append(Hypothesis(ids, score, tokenizer.decode(ids)))
                continue
            cut = _stop_cut(tokenizer.decode(ids), config.stop) if config.stop else None
            if cut is not None:
                finished.append(Hypothesis(ids, score, tokenizer.decode(ids)[:cut]))
            else:
                parents.append(parent)
                tokens.append(token)
                scores.append(score)
        if not parents or _settled(finished, scores[0], config):
            break
        beams.advance(parents, tokens, scores)
    else:
        finished += [Hypothesis(ids, score, tokenizer.decode(ids))
                     for ids, score in zip(beams.ids, beams.scores.tolist())]
    return sorted(finished, key=lambda h: -h.rank(config.length_norm))[: config.num]


def _settled(finished: list[Hypothesis], best_live: float, config: SampleConfig) -> bool:
    """Without length normalisation, live scores only fall: once config.num finished beams
    score above the best live one, nothing can displace them."""
    if config.length_norm or len(finished) < config.num:
        return False
    kept = sorted((h.log_prob for h in finished), reverse=True)[: config.num]
    return kept[-1] >= best_live
