"""Lean TTT attention: block 0 through a fused kernel, the TTT diagonal merged by log-sum-exp.

At unroll step j the query at slot t sees (a) the step-0 keys at slots <= t of its own
document and (b) the keys that steps 1..j produced at slot t only (DESIGN.md, TTT
attention). A naive implementation materializes ``[B, heads, T, T + j]`` scores; here
block (a) runs through PyTorch's fused flash / memory-efficient attention, which returns
its log-sum-exp, and the j diagonal scores (``[B, heads, T, j]``) are merged into it.

The backward pass follows ring attention: the fused kernel's backward is called with
the *merged* output and log-sum-exp, which makes it compute the gradient of the whole
softmax (block 0 and diagonal together) restricted to block 0's keys; the diagonal's
gradient is a few elementwise products. No ``T x T`` matrix is ever stored.
"""

from __future__ import annotations

import math

import torch


def document_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """Boolean ``[B, 1, T, T]`` visibility: causal, and keys only from the query's own document.

    Padding carries document id 0 and so only sees other padding, which keeps every
    softmax row non-empty without letting real tokens see padding.
    """
    T = document_ids.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()
    return (causal & (document_ids[:, :, None] == document_ids[:, None, :]))[:, None]


def _additive_bias(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 / -inf bias in the kernels' dtype; rows padded to 16 elements, as the CUDA kernel requires."""
    T = visible.shape[-1]
    aligned = -(-T // 16) * 16
    bias = torch.zeros(*visible.shape[:-1], aligned, dtype=dtype, device=visible.device)[..., :T]
    return bias.masked_fill_(~visible, float("-inf"))


def _block0_forward(q, k, v, bias, scale):
    """Fused attention over step-0 keys: ``(out [B,H,T,D], lse [B,H,T] fp32, extras)``."""
    if q.is_cuda:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if bias is not None:
            bias = bias.expand(-1, q.shape[1], -1, -1)
        out, lse, seed, offset = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, bias, True, 0.0, is_causal=bias is None, scale=scale
        )
        return out, lse[..., : q.shape[2]], (lse.shape, seed, offset)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, bias is None, attn_mask=bias, scale=scale
    )
    return out, lse, None


def _block0_backward(grad_out, q, k, v, bias, out, lse, extras, scale):
    """Gradients of block 0 given the merged output and log-sum-exp (see module doc)."""
    if q.is_cuda:
        rep = q.shape[1] // k.shape[1]
        ke, ve = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if bias is not None:
            bias = bias.expand(-1, q.shape[1], -1, -1)
        lse_shape, seed, offset = extras
        padded_lse = lse.new_zeros(lse_shape)
        padded_lse[..., : lse.shape[-1]] = lse
        dq, dk, dv, _ = torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            grad_out.contiguous(), q, ke, ve, bias, out.contiguous(), padded_lse, seed, offset,
            0.0, [True, True, True, False], bias is None, scale=scale,
        )
        B, KV, T, D = k.shape
        return dq, dk.view(B, KV, rep, T, D).sum(2), dv.view(B, KV, rep, T, D).sum(2)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out.contiguous(), q, k, v, out.contiguous(), lse, 0.0, bias is None, attn_mask=bias, scale=scale
    )


def _grouped(q: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """``[B, H, T, D] -> [B, KV, H/KV, T, D]`` so diagonal terms need no key copies."""
    B, H, T, D = q.shape
    return q.reshape(B, kv_heads, H // kv_heads, T, D)


class _TTTAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k0, v0, diag_k, diag_v, visible, scale):
        with torch.autocast(q.device.type, enabled=False):  # the merge must stay in fp32 under autocast
            return _TTTAttention._forward(ctx, q, k0, v0, diag_k, diag_v, visible, scale)

    @staticmethod
    def _forward(ctx, q, k0, v0, diag_k, diag_v, visible, scale):
        bias = None if visible is None else _additive_bias(visible, q.dtype)
        out0, lse0, extras = _block0_forward(q, k0, v0, bias, scale)
        out, lse = out0, lse0
        acc = torch.promote_types(q.dtype, torch.float32)
        if diag_k is not None:
            kv_heads = k0.shape[1]
            qg = _grouped(q, kv_heads).to(acc)
            scores = torch.einsum("bgrtd,bgtjd->bgrtj", qg, diag_k.to(acc)) * scale
            lse_g = torch.logaddexp(_grouped(lse0.unsqueeze(-1), kv_heads).squeeze(-1), scores.logsumexp(-1))
            probs = torch.exp(scores - lse_g.unsqueeze(-1))
            mixed = torch.exp(_grouped(lse0.unsqueeze(-1), kv_heads).squeeze(-1) - lse_g).unsqueeze(-1)
            out_g = mixed * _grouped(out0.to(acc), kv_heads) + torch.einsum("bgrtj,bgtjd->bgrtd", probs, diag_v.to(acc))
            out = out_g.reshape(q.shape).to(q.dtype)
            lse = lse_g.reshape(lse0.shape)
        ctx.save_for_backward(q, k0, v0, diag_k, diag_v, bias, out, lse)
        ctx.extras, ctx.scale = extras, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k0, v0, diag_k, diag_v, bias, out, lse = ctx.saved_tensors
        scale = ctx.scale
        acc = torch.promote_types(q.dtype, torch.float32)
        dq, dk0, dv0 = _block0_backward(grad_out, q, k0, v0, bias, out, lse, ctx.extras, scale)
        ddiag_k = ddiag_v = None
        if diag_k is not None:
            kv_heads = k0.shape[1]
            qg, dog = _grouped(q, kv_heads).to(acc), _grouped(grad_out, kv_heads).to(acc)
            scores = torch.einsum("bgrtd,bgtjd->bgrtj", qg, diag_k.to(acc)) * scale
            probs = torch.exp(scores - _grouped(lse.unsqueeze(-1), kv_heads))
            delta = (dog * _grouped(out, kv_heads).to(acc)).sum(-1, keepdim=True)
            dscores = probs * (torch.einsum("bgrtd,bgtjd->bgrtj", dog, diag_v.to(acc)) - delta)
            dq = dq + (torch.einsum("bgrtj,bgtjd->bgrtd", dscores, diag_k.to(acc)) * scale).reshape(q.shape).to(dq.dtype)
            ddiag_k = (torch.einsum("bgrtj,bgrtd->bgtjd", dscores, qg) * scale).to(diag_k.dtype)
            ddiag_v = torch.einsum("bgrtj,bgrtd->bgtjd", probs, dog).to(diag_v.dtype)
        return dq, dk0, dv0, ddiag_k, ddiag_v, None, None


def ttt_attention(
    q: torch.Tensor,
    k0: torch.Tensor,
    v0: torch.Tensor,
    diag_k: torch.Tensor | None = None,
    diag_v: torch.Tensor | None = None,
    visible: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of one TTT step.

    Args:
        q: ``[B, H, T, D]`` queries of this step.
        k0, v0: ``[B, KV, T, D]`` step-0 keys and values.
        diag_k, diag_v: ``[B, KV, T, j, D]`` keys and values of steps 1..j, or None at step 0.
        visible: optional boolean ``[B, 1, T, T]`` from :func:`document_mask`; None means plain
            causal attention (right-padded batches of single documents).
    Returns:
        ``[B, H, T, D]`` attention output in q's dtype.
    """
    return _TTTAttention.apply(q, k0, v0, diag_k, diag_v, visible, 1.0 / math.sqrt(q.shape[-1]))


class KVCache:
    """The draft's keys and values at token positions, for drafting (not training).

    Drafting runs the same layer as TTT, one call per chain depth; the keys of every
    call are appended here with their token positions, so depth j attends to the
    accepted tokens' step-0 keys and the keys the chain added at depths 1..j: the
    TTT attention pattern of one slot. :meth:`truncate` drops the drafted keys again.
    """

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None  # [B, KV, N, D]
        self.values: torch.Tensor | None = None
        self.positions = torch.empty(0, dtype=torch.long)  # [N]

    def __len__(self) -> int:
        return int(self.positions.numel())

    def append(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor) -> None:
        self.keys = k if self.keys is None else torch.cat((self.keys, k), dim=2)
        self.values = v if self.values is None else torch.cat((self.values, v), dim=2)
        self.positions = torch.cat((self.positions.to(positions.device), positions.view(-1)))

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` entries (the committed tokens), dropping drafted ones."""
        if self.keys is not None:
            self.keys, self.values = self.keys[:, :, :length], self.values[:, :, :length]
        self.positions = self.positions[:length]


def position_mask(query_positions: torch.Tensor, key_positions: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Boolean ``[Tq, Tk]``: a key is visible at or before the query's position and, with a
    ``window``, fewer than ``window`` positions behind it (the sliding-window convention)."""
    behind = query_positions[:, None] - key_positions[None, :]
    visible = behind >= 0
    return visible & (behind < window) if window is not None else visible


def cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache,
                     query_positions: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Append ``k``/``v`` (at ``query_positions``) to ``cache`` and attend ``q [B, H, Tq, D]`` over it."""
    cache.append(k, v, query_positions)
    visible = position_mask(query_positions.view(-1), cache.positions, window)
    rep = q.shape[1] // cache.keys.shape[1]
    keys, values = cache.keys.repeat_interleave(rep, dim=1), cache.values.repeat_interleave(rep, dim=1)
    return torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=visible)
