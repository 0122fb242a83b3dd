"""Beam search: the likeliest continuations of a prompt, rather than samples.

All live beams advance together as one batch through the one-token Decoder (a window model
reads each beam's windows as its sampling does, sliding.window_reader). Every live beam
has the same length, so within a step they are ranked by total log-probability; a beam that
meets a stop sequence is finished and kept aside. Finished beams differ in length: with
`length_norm` they are ranked by log-probability per token, otherwise in total (which favours
the shorter, and lets the search end early once no live beam can overtake them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .config import SampleConfig
from .decode import Decoder, decode_dtype
from .model import RNNLanguageModel, select_state
from .sampling import banned_bias, consume_prompt, penalize_repetition
from .sliding import initial_windows, window_logits, window_reader


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
    """The live beams: their ids and scores, and what scores each one's next token."""

    def __init__(self, model: RNNLanguageModel, prompt: torch.Tensor, config: SampleConfig):
        device = next(model.parameters()).device
        prompt = prompt.to(device)
        self.ids: list[tuple[int, ...]] = [()]
        self.scores = torch.zeros(1, device=device)
        self.seen = None
        if config.repetition_penalty != 1.0:
            self.seen = torch.zeros(1, model.vocab_size, dtype=torch.bool, device=device)
            self.seen[:, prompt] = True
        self.logits = self._start(model, prompt, config)

    def candidates(self, bias, penalty: float) -> torch.Tensor:
        """(live, vocab) total log-probability of every one-token extension."""
        logits = self.logits if self.seen is None else penalize_repetition(self.logits, self.seen,
                                                                           penalty)
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
        self.logits = self._step(rows, next_ids)


class _StatefulBeams(_Beams):
    """Stream, sequence and document models: each beam carries its state through the
    one-token Decoder."""

    def _start(self, model, prompt, config) -> torch.Tensor:
        self.decoder = Decoder(model, decode_dtype(prompt.device, config.beam,
                                                   model.config.hidden_size, config.precision),
                               rows=config.beam)
        logits, state = consume_prompt(model, prompt)
        self.layers = self.decoder.split_state(state)
        return logits

    def _step(self, rows, next_ids) -> torch.Tensor:
        state = select_state(self.decoder.join_state(self.layers), rows)
        logits, self.layers = self.decoder.step(next_ids, self.decoder.split_state(state))
        return logits


class _WindowBeams(_Beams):
    """Window models: each beam's next token is scored from its last `window` ids read
    afresh, as the tutorials' sliding-window generation does (sliding.py)."""

    def _start(self, model, prompt, config) -> torch.Tensor:
        windows = initial_windows(prompt, 1, model.framing.window, model.framing.pad_id)
        self.reader = window_reader(model, windows, config.precision, config.length, config.beam)
        return self.reader.logits()

    def _step(self, rows, next_ids) -> torch.Tensor:
        self.reader.select(rows)
        self.reader.push(next_ids)
        return self.reader.logits()


@torch.inference_mode()
def beam_search(model: RNNLanguageModel, tokenizer, prompt: torch.Tensor,
                config: SampleConfig) -> list[Hypothesis]:
    """prompt: (prompt_len,) ids. -> the config.num best continuations of up to config.length
    tokens, best first."""
    model.eval()
    banned = tokenizer.never_sample
    width = min(config.beam, model.vocab_size - len(banned))
    bias = banned_bias(model.vocab_size, banned, prompt.device)
    beams = (_WindowBeams if model.framing.windowed else _StatefulBeams)(model, prompt, config)
    bias = None if bias is None else bias.to(beams.scores.device)
    finished: list[Hypothesis] = []
    end_id = getattr(tokenizer, "end_id", None)  # a document run's [end] finishes a beam
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


def continuation_log_prob(model: RNNLanguageModel, prompt: torch.Tensor, ids: Sequence[int],
                          banned: Sequence[int] = ()) -> float:
    """log P(ids | prompt) under the model, with the banned ids masked out as when generating."""
    with torch.inference_mode():
        full = torch.cat([prompt, torch.tensor(list(ids), dtype=prompt.dtype)])
        if model.framing.windowed:  # each token from the window before it
            window, pad = model.framing.window, model.framing.pad_id
            windows = torch.cat([initial_windows(full[:end], 1, window, pad)
                                 for end in range(len(prompt), len(full))])
            logits = window_logits(model, windows)
        else:
            logits, _ = model(full[:-1].view(1, -1))
            logits = logits[0, len(prompt) - 1 :].float()
        bias = banned_bias(model.vocab_size, banned, logits.device)
        logits = logits if bias is None else logits + bias
        log_probs = torch.log_softmax(logits, dim=-1)
        return float(log_probs.gather(1, torch.tensor(list(ids)).view(-1, 1)).sum())
