"""The TTT objective: soft cross-entropy per unroll step against the target's distribution.

Alignment (``docs/token-alignment.md``). Tokens ``x_0 .. x_{T-1}``; the target gives,
per position p, aux states and its next-token distribution (which predicts ``x_{p+1}``).
At step 0, slot t holds the aux states at position t and the input token ``x_{t+1}``, and
is supervised by the target distribution at position ``t + 1``; step j shifts tokens,
targets and masks j further slots left, so slot t at step j is supervised by the target
at position ``p = t + 1 + j``, which predicts token ``x_{p+1}``.

A slot counts when the token it predicts is an assistant token (``loss_mask[p + 1]``), lies
in the same document as the slot, and (for the loss only) the target's argmax at p is in
the draft vocabulary. Agreement metrics count out-of-vocabulary targets as misses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from draftsmith.data import pad_batch
from draftsmith.model.draft import Eagle3Draft
from draftsmith.target.capture import TargetOutputs
from draftsmith.vocab_mapping import draft_to_target


@dataclass
class TokenBatch:
    """A right-padded batch of samples (see :func:`draftsmith.data.pad_batch`)."""

    input_ids: torch.Tensor  # [B, T]
    loss_mask: torch.Tensor  # [B, T], 1 on assistant tokens
    document_ids: torch.Tensor  # [B, T], 0 = padding, else a document id
    position_ids: torch.Tensor  # [B, T]

    @classmethod
    def from_samples(cls, samples: list, pad_token_id: int, device: torch.device | str = "cpu") -> TokenBatch:
        padded = {k: torch.tensor(v, dtype=torch.long, device=device) for k, v in pad_batch(samples, pad_token_id).items()}
        return cls(padded["input_ids"], padded["loss_mask"], padded["attention_mask"], padded["position_ids"])

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(*(t.to(device) for t in (self.input_ids, self.loss_mask, self.document_ids, self.position_ids)))

    @property
    def real_tokens(self) -> int:
        return int((self.document_ids != 0).sum())


def step_weights(steps: int, decay: float = 0.8) -> torch.Tensor:
    """``decay**j`` normalized to sum to 1, so the loss scale does not depend on the unroll depth."""
    weights = decay ** torch.arange(steps, dtype=torch.float64)
    return (weights / weights.sum()).float()


def supervised_slots(batch: TokenBatch, supervision: TargetOutputs, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid, trained)`` per step: bool ``[steps, B, T]``.

    ``valid``: the predicted token is an assistant token of the slot's own document.
    ``trained``: valid and the target's argmax is inside the draft vocabulary.
    """
    B, T = batch.input_ids.shape
    device = batch.input_ids.device
    valid = torch.zeros(steps, B, T, dtype=torch.bool, device=device)
    trained = torch.zeros_like(valid)
    docs, mask = batch.document_ids, batch.loss_mask.bool()
    for j in range(steps):
        n = T - 2 - j  # slots t with t + 2 + j < T
        if n <= 0:
            break
        same_doc = (docs[:, :n] == docs[:, 2 + j:]) & (docs[:, :n] != 0)
        valid[j, :, :n] = mask[:, 2 + j:] & same_doc
        trained[j, :, :n] = valid[j, :, :n] & supervision.in_draft_vocab[:, 1 + j:T - 1].bool()
    return valid, trained


@dataclass
class StepStats:
    """Sums over a batch; add them over a logging window, then read the ratios."""

    loss_sum: torch.Tensor  # [steps] sum of per-slot cross-entropy over trained slots
    trained: torch.Tensor  # [steps] trained slot counts
    agree: torch.Tensor  # [steps] draft argmax == target argmax over valid slots
    valid: torch.Tensor  # [steps] valid slot counts
    chain: torch.Tensor  # [steps] slots whose first k+1 drafts all agree (k = index)
    chain_base: torch.Tensor  # [] slots valid at step 0

    def __add__(self, other: StepStats) -> StepStats:
        return StepStats.from_flat(self.flat() + other.flat())

    def flat(self) -> torch.Tensor:
        """All sums in one fp32 vector, for a single all-reduce across ranks."""
        parts = (self.loss_sum, self.trained, self.agree, self.valid, self.chain, self.chain_base)
        return torch.cat([p.detach().flatten().float() for p in parts])

    @classmethod
    def from_flat(cls, flat: torch.Tensor) -> StepStats:
        steps = (flat.numel() - 1) // 5
        *per_step, base = flat.split([steps] * 5 + [1])
        return cls(*per_step, base[0])

    @classmethod
    def zeros(cls, steps: int, device: torch.device | str = "cpu") -> StepStats:
        return cls.from_flat(torch.zeros(5 * steps + 1, device=device))

    def summary(self) -> dict[str, float]:
        """Per-depth loss and agreement, and the simulated acceptance length τ."""
        out = {}
        for j in range(self.loss_sum.shape[0]):
            out[f"loss_{j}"] = (self.loss_sum[j] / self.trained[j].clamp(min=1)).item()
            out[f"agree_{j}"] = (self.agree[j] / self.valid[j].clamp(min=1)).item()
        out["tau_sim"] = 1.0 + (self.chain / self.chain_base.clamp(min=1)).sum().item()
        return out


def _soft_cross_entropy(draft: Eagle3Draft, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked soft cross-entropy sum and the draft's argmax ids, for one unroll step.

    Run under activation checkpointing: the ``[B, T, draft_vocab]`` logits and their
    log-softmax are recomputed in backward instead of being kept, for the price of one
    more ``lm_head`` matmul.
    """
    logits = draft.logits(hidden).float()
    ce = F.cross_entropy(logits.flatten(0, 1), targets.float().flatten(0, 1), reduction="none")
    return (ce.view(mask.shape) * mask).sum(), logits.detach().argmax(-1)


def trained_counts(batch: TokenBatch, supervision: TargetOutputs, steps: int) -> torch.Tensor:
    """Trained slots per step ``[steps]`` (fp32): what a step's loss is a mean over."""
    return supervised_slots(batch, supervision, steps)[1].sum(dim=(1, 2)).float()


def ttt_objective(
    draft: Eagle3Draft,
    batch: TokenBatch,
    supervision: TargetOutputs,
    steps: int,
    decay: float = 0.8,
    counts: torch.Tensor | None = None,
    world_size: int = 1,
) -> tuple[torch.Tensor, StepStats]:
    """Weighted TTT loss for one batch, and its statistics.

    Each step's loss is a sum over its trained slots divided by ``counts[j]``: by default
    this batch's own trained slots (a mean). A trainer that accumulates gradients passes
    the counts of the whole optimizer step (every micro-batch, every rank, see
    :func:`trained_counts`), so the summed gradients are those of one batch holding all
    of them. Under data parallelism the loss is multiplied by ``world_size`` because DDP
    averages gradients over ranks.
    """
    T = batch.input_ids.shape[1]
    valid, trained = supervised_slots(batch, supervision, steps)
    if counts is None:
        counts = trained.sum(dim=(1, 2)).float()
    weights = step_weights(steps, decay).to(counts.device) * world_size
    draft_inputs = F.pad(batch.input_ids[:, 1:], (0, 1))
    d2t = draft.d2t
    loss = torch.zeros((), device=batch.input_ids.device)
    stats = [torch.zeros(steps, device=loss.device) for _ in range(5)]
    loss_sum, n_trained, agree, n_valid, chain = stats
    chain_alive = valid[0].clone()
    for j, hidden in enumerate(draft.steps(draft_inputs, supervision.aux_hidden_states, steps,
                                            attention_mask=batch.document_ids, position_ids=batch.position_ids)):
        n = T - 2 - j
        if n <= 0:
            break
        targets = supervision.target_probs[:, 1 + j:T - 1]
        step_trained = trained[j, :, :n]
        args = (draft, hidden[:, :n], targets, step_trained)  # only the slots that have a target at depth j
        if torch.is_grad_enabled():
            step_sum, draft_ids = checkpoint(_soft_cross_entropy, *args, use_reentrant=False)
        else:
            step_sum, draft_ids = _soft_cross_entropy(*args)
        loss = loss + weights[j] * step_sum / counts[j].clamp(min=1)
        with torch.no_grad():
            hits = draft_to_target(draft_ids, d2t) == supervision.target_argmax[:, 1 + j:T - 1]
            step_valid = valid[j, :, :n]
            chain_alive[:, :n] &= hits & step_valid
            chain_alive[:, n:] = False
            loss_sum[j] = step_sum.detach()
            n_trained[j] = step_trained.sum()
            agree[j] = (hits & step_valid).sum()
            n_valid[j] = step_valid.sum()
            chain[j] = chain_alive.sum()
    return loss, StepStats(loss_sum, n_trained, agree, n_valid, chain, valid[0].sum().float())
