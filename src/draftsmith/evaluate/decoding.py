"""Speculative decoding against the target's KV cache, and the plain decoding it is measured against.

One verification forward runs the pending token (the target's last own token, not yet
in its cache) plus k drafted tokens. Greedy: the longest drafted prefix equal to the
target's argmax is accepted, then the target's own next token (the bonus). Sampling
(temperature > 0): drafted token x at depth j is accepted with probability
``min(1, p(x) / q(x))``; the first rejected depth samples from ``normalize(max(0, p - q))``
instead, and a fully accepted chain samples the bonus from p. This leaves the output
distributed exactly as plain sampling from the target.

The target's cache is then cut back to the committed tokens. transformers' sliding-window
cache layers (gpt-oss) normally keep only the last ``window - 1`` keys, which cannot be
cut back after a forward that went past them; :class:`CachedTarget` switches on their
past recording (as transformers' own assisted generation does), so each forward keeps
every key until the ``crop`` that follows it trims the layer to the committed tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from draftsmith.evaluate.proposer import Proposer, sample
from draftsmith.target.capture import TargetModel


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CachedTarget:
    """The target with a KV cache that can be rolled back to the committed tokens."""

    def __init__(self, target: TargetModel):
        self.target = target
        self.lm_head = target.model.get_output_embeddings()
        self.cache = DynamicCache(config=target.config)
        self.cache.activate_past_recording()
        self.length = 0

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [m, vocab] fp32, aux [1, m, 3H])`` of ``ids [m]`` after the cached tokens."""
        aux, final = self.target.capture_aux(ids.view(1, -1), cache=self.cache)
        self.length += ids.numel()
        return self.lm_head(final[0]).float(), aux

    def rollback(self, tokens: int) -> None:
        """Drop the last ``tokens`` keys (the rejected drafts); also trims sliding layers to their window."""
        self.cache.crop(-tokens)
        self.length -= tokens


@dataclass
class Generation:
    """One decoded prompt: the tokens and, for speculative decoding, what each round accepted."""

    prompt_length: int
    tokens: list[int]
    accepted: list[int] = field(default_factory=list)  # accepted drafts per verification round
    drafted: list[int] = field(default_factory=list)  # drafts proposed per round (k, less near the context end)
    draft_seconds: float = 0.0
    target_seconds: float = 0.0
    decode_seconds: float = 0.0  # after the prefill, until the last token

    @property
    def rounds(self) -> int:
        return len(self.accepted)

    @property
    def committed(self) -> int:
        """Tokens committed by verification rounds (accepted drafts plus one bonus each)."""
        return sum(self.accepted) + len(self.accepted)


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    if temperature > 0:
        return sample(torch.softmax(logits / temperature, dim=-1), generator)
    return int(logits.argmax())


def verify(logits: torch.Tensor, drafts: torch.Tensor, q: torch.Tensor | None, temperature: float,
           generator: torch.Generator | None) -> tuple[int, int]:
    """``(accepted drafts, next token)`` from the target's logits ``[k + 1, vocab]`` over pending + drafts."""
    k = drafts.numel()
    if temperature <= 0:
        target = logits.argmax(dim=-1)
        matches = (target[:k] == drafts.to(target.device)).int()
        accepted = int(matches.cumprod(0).sum()) if k else 0
        return accepted, int(target[accepted])
    p = torch.softmax(logits / temperature, dim=-1)
    for j in range(k):
        x = int(drafts[j])
        ratio = (p[j, x] / q[j, x]).clamp(max=1.0)
        if float(torch.rand((), generator=generator, device=p.device)) < float(ratio):
            continue
        residual = (p[j] - q[j].to(p.device)).clamp(min=0)
        return j, sample(residual / residual.sum() if residual.sum() > 0 else p[j], generator)
    return k, sample(p[k], generator)


def _finish(generation: Generation, max_new_tokens: int, eos: set[int]) -> Generation:
    tokens = generation.tokens[:max_new_tokens]
    stop = next((i for i, t in enumerate(tokens) if t in eos), None)
    generation.tokens = tokens if stop is None else tokens[: stop + 1]
    return generation


def speculative_decode(target: TargetModel, proposer: Proposer, prompt: torch.Tensor, steps: int,
                       max_new_tokens: int, max_length: int, temperature: float = 0.0,
                       generator: torch.Generator | None = None, eos: set[int] = frozenset()) -> Generation:
    """Decode ``prompt [n]`` with ``proposer`` drafting ``steps`` tokens per target verification.

    Generation stops after ``max_new_tokens``, at an ``eos`` token, or when the next
    token would sit at ``max_length``. A round near ``max_length`` drafts fewer tokens.
    """
    device = target.device
    runner = CachedTarget(target)
    prompt = prompt.to(device)
    logits, aux = runner.forward(prompt)
    runner.rollback(0)
    first = _choose(logits[-1], temperature, generator)
    n = prompt.numel()
    tokens = [first]
    positions = torch.arange(n, device=device)
    _synchronize(device)
    start = time.perf_counter()
    proposer.extend(aux, torch.cat([prompt[1:], prompt.new_tensor([first])]), positions)
    _synchronize(device)
    out = Generation(n, tokens, draft_seconds=time.perf_counter() - start)
    start = time.perf_counter()
    finished = first in eos
    while len(tokens) < max_new_tokens and not finished and n + 1 < max_length:
        k = min(steps, max_length - n - 2)  # the bonus token must sit below max_length too
        t0 = time.perf_counter()
        drafts, q = proposer.propose(k, temperature, generator)
        _synchronize(device)
        t1 = time.perf_counter()
        drafts = drafts.long()
        logits, aux = runner.forward(torch.cat([prompt.new_tensor([tokens[-1]]), drafts.to(device)]))
        accepted, bonus = verify(logits, drafts, q, temperature, generator)
        runner.rollback(k - accepted)
        _synchronize(device)
        t2 = time.perf_counter()
        committed = drafts[:accepted].tolist() + [bonus]
        proposer.extend(aux[:, : accepted + 1], torch.tensor(committed, device=device),
                        torch.arange(n, n + accepted + 1, device=device))
        _synchronize(device)
        out.draft_seconds += (t1 - t0) + (time.perf_counter() - t2)
        out.target_seconds += t2 - t1
        out.accepted.append(accepted)
        out.drafted.append(k)
        tokens += committed
        n += accepted + 1
        finished = any(t in eos for t in committed)
    out.decode_seconds = time.perf_counter() - start
    return _finish(out, max_new_tokens, eos)


def plain_decode(target: TargetModel, prompt: torch.Tensor, max_new_tokens: int, max_length: int,
                 temperature: float = 0.0, generator: torch.Generator | None = None,
                 eos: set[int] = frozenset()) -> Generation:
    """One target forward per token with the same KV cache: the baseline speculative decoding is timed against."""
    device = target.device
    cache = DynamicCache(config=target.config)
    prompt = prompt.to(device)
    with torch.no_grad():
        logits = target.model(input_ids=prompt.view(1, -1), cache=cache, use_cache=True).logits[0, -1]
    tokens = [_choose(logits.float(), temperature, generator)]
    n = prompt.numel()
    _synchronize(device)
    start = time.perf_counter()
    while len(tokens) < max_new_tokens and tokens[-1] not in eos and n + 1 < max_length:
        with torch.no_grad():
            logits = target.model(input_ids=prompt.new_tensor([[tokens[-1]]]), cache=cache,
                                  use_cache=True).logits[0, -1]
        tokens.append(_choose(logits.float(), temperature, generator))
        n += 1
    _synchronize(device)
    out = Generation(prompt.numel(), tokens)
    out.decode_seconds = out.target_seconds = time.perf_counter() - start
    return out
