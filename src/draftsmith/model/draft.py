"""The EAGLE-3 draft: one Llama-style decoder layer fed by three target hidden states.

Per step (DESIGN.md): ``h = fc(aux)`` at step 0; ``x = [input_layernorm(emb), hidden_norm(h)]``
(width 2H); attention over q/k/v of x with the target's rotary; ``r = h + attn``;
``h_next = r + mlp(post_attention_layernorm(r))``; ``logits = lm_head(norm(h_next))``.
No biases anywhere: SGLang builds q/k/v without them and would silently drop them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from draftsmith.model.attention import KVCache, cached_attention, document_mask, ttt_attention
from draftsmith.model.config import DraftConfig
from draftsmith.model.rope import RotaryEmbedding, apply_rotary


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * wide.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, c: DraftConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(2 * c.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(2 * c.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(2 * c.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, past: tuple[tuple[torch.Tensor, torch.Tensor], ...] | Callable, visible):
        """Attention of one TTT step; ``past`` holds the (k, v) of the earlier steps.

        When drafting, ``past`` is instead a function ``(q, k, v) -> out`` that attends over
        the draft's KV cache (:meth:`Eagle3Draft.decode`); projections and rotary are shared.
        """
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if callable(past):
            return self.o_proj(past(q, k, v).transpose(1, 2).reshape(B, T, -1)), (k, v)
        (k0, v0), *diagonal = *past, (k, v)
        diag_k = torch.stack([k for k, _ in diagonal], dim=3) if diagonal else None
        diag_v = torch.stack([v for _, v in diagonal], dim=3) if diagonal else None
        out = ttt_attention(q, k0, v0, diag_k, diag_v, visible)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1)), (k, v)


class MLP(nn.Module):
    def __init__(self, c: DraftConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: DraftConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.hidden_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MLP(c)

    def forward(self, emb, h, cos, sin, past, visible):
        x = torch.cat((self.input_layernorm(emb), self.hidden_norm(h)), dim=-1)
        a, kv = self.self_attn(x, cos, sin, past, visible)
        r = h + a
        return r + self.mlp(self.post_attention_layernorm(r)), kv


class Eagle3Draft(nn.Module):
    """EAGLE-3 draft model; ``unroll`` runs the TTT chain used in training and drafting."""

    def __init__(self, config: DraftConfig):
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.embed_tokens.weight.requires_grad_(False)  # a frozen copy of the target's
        self.fc = nn.Linear(3 * c.target_hidden_size, c.hidden_size, bias=False)
        self.midlayer = DecoderLayer(c)
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.lm_head = nn.Linear(c.hidden_size, c.draft_vocab_size, bias=False)
        self.rotary = RotaryEmbedding(c.head_dim, c.rope_parameters, c.max_position_embeddings)
        # target_id = draft_id + d2t[draft_id]; t2d marks target ids the draft can emit.
        self.register_buffer("d2t", torch.zeros(c.draft_vocab_size, dtype=torch.long))
        self.register_buffer("t2d", torch.arange(c.vocab_size) < c.draft_vocab_size)
        self.gradient_checkpointing = False  # recompute the layer in backward to save activation memory

    def set_vocab_mapping(self, d2t: torch.Tensor, t2d: torch.Tensor | None = None) -> None:
        """Install a draft↔target vocabulary mapping after checking it is consistent.

        ``t2d`` follows from ``d2t``; when given (checkpoints store both) it must agree.
        """
        c = self.config
        if d2t.shape != (c.draft_vocab_size,):
            raise ValueError(f"vocab mapping shapes: d2t {tuple(d2t.shape)} does not match "
                             f"draft_vocab_size {c.draft_vocab_size}")
        target_ids = torch.arange(c.draft_vocab_size) + d2t.long().cpu()
        if target_ids.min() < 0 or target_ids.max() >= c.vocab_size:
            raise ValueError("d2t maps draft ids outside the target vocabulary")
        if t2d is None:
            t2d = torch.zeros(c.vocab_size, dtype=torch.bool)
            t2d[target_ids] = True
        if t2d.shape != (c.vocab_size,):
            raise ValueError(f"vocab mapping shapes: t2d {tuple(t2d.shape)} does not match vocab_size {c.vocab_size}")
        if not torch.equal(torch.sort(target_ids).values, torch.nonzero(t2d.cpu()).flatten()):
            raise ValueError("d2t and t2d disagree about which target ids are in the draft vocabulary")
        self.d2t.copy_(d2t.long())
        self.t2d.copy_(t2d.bool())

    def steps(
        self,
        input_ids: torch.Tensor,
        aux_hidden_states: torch.Tensor,
        steps: int,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield the hidden state ``h_next`` ``[B, T, H]`` of TTT steps 0..steps-1 (logits: :meth:`logits`).

        Hidden states rather than logits, so a caller can project only the slots it needs.

        ``attention_mask`` is ``[B, T]``: 0 for padding, and for packed sequences a
        positive document id per token (1 everywhere for one document). Batches of one
        right-padded document need no mask at all: causal attention already keeps real
        tokens away from the padding after them.
        """
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        visible = None
        if attention_mask is not None and not _right_padded_single_document(attention_mask):
            visible = document_mask(attention_mask)
        h = self.fc(aux_hidden_states.to(self.fc.weight.dtype))  # a bf16 target may feed an fp32 draft
        past: list[tuple[torch.Tensor, torch.Tensor]] = []
        for j in range(steps):
            ids = F.pad(input_ids[:, j:], (0, j)) if j else input_ids
            cos, sin = self.rotary(position_ids + j)
            args = (self.embed_tokens(ids), h, cos, sin, tuple(past), visible)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                h, kv = checkpoint(self.midlayer, *args, use_reentrant=False)
            else:
                h, kv = self.midlayer(*args)
            past.append(kv)
            yield h

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of hidden states from :meth:`steps`."""
        return self.lm_head(self.norm(hidden))

    @torch.no_grad()
    def decode(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        cache: KVCache,
        *,
        aux_hidden_states: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        window: int | None = None,
    ) -> torch.Tensor:
        """One drafting call of the TTT layer over a KV cache: ``h_next [B, T, H]``.

        With ``aux_hidden_states`` this is step 0 of :meth:`steps` for new slots (``h =
        fc(aux)``); with ``hidden`` (the previous depth's ``h_next``) it is the next chain
        depth. ``position_ids [T]`` are the slots' token positions; their keys are appended
        to ``cache`` and each query sees the cached keys at or before its position (the last
        ``window`` positions only, when given), which is what the TTT mask lets one slot see.
        """
        if (aux_hidden_states is None) == (hidden is None):
            raise ValueError("decode takes exactly one of aux_hidden_states (step 0) and hidden (a chain depth)")
        h = self.fc(aux_hidden_states.to(self.fc.weight.dtype)) if hidden is None else hidden
        positions = position_ids.view(-1)
        cos, sin = self.rotary(positions.expand(input_ids.shape[0], -1))
        attend = partial(cached_attention, cache=cache, query_positions=positions, window=window)
        return self.midlayer(self.embed_tokens(input_ids), h, cos, sin, attend, None)[0]

    def unroll(
        self,
        input_ids: torch.Tensor,
        aux_hidden_states: torch.Tensor,
        steps: int,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-step draft logits ``[steps, B, T, draft_vocab]`` (step j sees input_ids shifted left by j)."""
        hidden = self.steps(input_ids, aux_hidden_states, steps, attention_mask, position_ids)
        return torch.stack([self.logits(h) for h in hidden])


def _right_padded_single_document(mask: torch.Tensor) -> bool:
    """True when every row is 1s followed by 0s: causal attention alone is then exact."""
    ones = mask == 1
    return bool(((mask == 0) | ones).all() and (ones.int().diff(dim=-1) <= 0).all())
