"""The EAGLE-3 draft: one Llama-style decoder layer fed by three target hidden states.

Per step (inputs lined up as in ``docs/token-alignment.md``): ``h = fc(aux)`` at step 0;
``x = [input_layernorm(emb), hidden_norm(h)]`` (width 2H); attention over q/k/v of x with
the target's rotary; ``r = h + attn``; ``h_next = r + mlp(post_attention_layernorm(r))``;
``logits = lm_head(norm(h_next))``.
No biases anywhere: SGLang builds q/k/v without them and would silently drop them.

Options of :class:`DraftConfig` change four places, as the engines implement them:
``norm_before_fc`` / ``fc_norm`` norm the aux states before ``fc`` (:meth:`Eagle3Draft.project_aux`),
``norm_before_residual`` makes the residual ``hidden_norm(h)``, and ``norm_output`` carries
``norm(h_next)`` to the next step, which the lm_head then reads without a second norm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from draftsmith.model.attention import KVCache, cached_attention, document_mask, needs_document_mask, ttt_attention
from draftsmith.model.config import DraftConfig
from draftsmith.model.rope import RotaryEmbedding, apply_rotary
from draftsmith.vocab_mapping import check_mapping


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
        self.norm_before_residual = c.norm_before_residual

    def forward(self, emb, h, cos, sin, past, visible):
        normed = self.hidden_norm(h)
        x = torch.cat((self.input_layernorm(emb), normed), dim=-1)
        a, kv = self.self_attn(x, cos, sin, past, visible)
        r = (normed if self.norm_before_residual else h) + a
        return r + self.mlp(self.post_attention_layernorm(r)), kv


class Eagle3Draft(nn.Module):
    """EAGLE-3 draft model; ``unroll`` runs the TTT chain used in training and drafting."""

    def __init__(self, config: DraftConfig):
        super().__init__()
        self.config = c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.embed_tokens.weight.requires_grad_(False)  # a frozen copy of the target's
        self.fc = nn.Linear(3 * c.target_hidden_size, c.hidden_size, bias=False)
        if c.norm_before_fc:
            self.input_norm = RMSNorm(3 * c.target_hidden_size, c.rms_norm_eps)
        if c.fc_norm:
            self.fc_norm = nn.ModuleList(RMSNorm(c.target_hidden_size, c.rms_norm_eps) for _ in range(3))
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

        ``t2d`` follows from ``d2t``; when given (checkpoints store both) it must agree
        (the rules: :mod:`draftsmith.vocab_mapping`).
        """
        d2t, t2d = check_mapping(d2t, t2d, self.config.vocab_size, self.config.draft_vocab_size)
        self.d2t.copy_(d2t)
        self.t2d.copy_(t2d)

    def steps(
        self,
        input_ids: torch.Tensor,
        aux_hidden_states: torch.Tensor,
        steps: int,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield the hidden state ``[B, T, H]`` each TTT step 0..steps-1 carries on (logits: :meth:`logits`).

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
        if attention_mask is not None and needs_document_mask(attention_mask):
            visible = document_mask(attention_mask)
        h = self.project_aux(aux_hidden_states)
        past: list[tuple[torch.Tensor, torch.Tensor]] = []
        for j in range(steps):
            ids = F.pad(input_ids[:, j:], (0, j)) if j else input_ids
            cos, sin = self.rotary(position_ids + j)
            args = (self.embed_tokens(ids), h, cos, sin, tuple(past), visible)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                h, kv = checkpoint(self.midlayer, *args, use_reentrant=False)
            else:
                h, kv = self.midlayer(*args)
            if self.config.norm_output:
                h = self.norm(h)
            past.append(kv)
            yield h

    def project_aux(self, aux_hidden_states: torch.Tensor) -> torch.Tensor:
        """``fc`` over the concatenated aux states ``[B, T, 3 * H_target]``, after the configured norms."""
        aux = aux_hidden_states.to(self.fc.weight.dtype)  # a bf16 target may feed an fp32 draft
        if self.config.norm_before_fc:
            aux = self.input_norm(aux)
        if self.config.fc_norm:
            aux = torch.cat([norm(part) for norm, part in zip(self.fc_norm, aux.chunk(3, dim=-1))], dim=-1)
        return self.fc(aux)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of hidden states from :meth:`steps` (already normed with ``norm_output``)."""
        return self.lm_head(hidden if self.config.norm_output else self.norm(hidden))

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
        project_aux(aux)``); with ``hidden`` (the previous depth's ``h_next``) it is the next chain
        depth. ``position_ids [T]`` are the slots' token positions; their keys are appended
        to ``cache`` and each query sees the cached keys at or before its position (the last
        ``window`` positions only, when given), which is what the TTT mask lets one slot see.
        """
        if (aux_hidden_states is None) == (hidden is None):
            raise ValueError("decode takes exactly one of aux_hidden_states (step 0) and hidden (a chain depth)")
        h = self.project_aux(aux_hidden_states) if hidden is None else hidden
        positions = position_ids.view(-1)
        cos, sin = self.rotary(positions.expand(input_ids.shape[0], -1))
        attend = partial(cached_attention, cache=cache, query_positions=positions, window=window)
        h = self.midlayer(self.embed_tokens(input_ids), h, cos, sin, attend, None)[0]
        return self.norm(h) if self.config.norm_output else h

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

