"""A fused attention for *training* the shipped gpt-oss target on long sequences on a CPU.

Hugging Face's gpt-oss ships only an eager attention (sinks are not in PyTorch's fused kernels),
which stores ``heads x T x T`` scores per layer: several GiB and most of the time at T = 8,192.
This function computes exactly the same thing through ``scaled_dot_product_attention``:

- **Sinks** (one logit per head, in every softmax's denominator, attached to no value): each
  head's dimension grows by one. Queries get a 1 there, real keys a 0, and one extra key at the
  front gets ``sink / scaling`` there and zeros elsewhere, with a zero value. Its score is then
  the sink logit and it adds only to the denominator, as in the eager code; gradients reach the
  sink through the kernel's own backward. A zero query row in front keeps the causal mask aligned.
- **Sliding windows** (query i sees keys i - W + 1 .. i) run block by block: each block of W
  queries attends to its own block and the one before, so memory and time grow with T x W.

Used only by ``build_target`` (selected under :data:`NAME` while it trains and measures). Hugging
Face builds no mask for an attention it has no mask builder for, so this is for unpadded causal
inputs only, which is all ``build_target`` feeds it; the saved model keeps the eager attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

NAME = "draftsmith_packed_sinks"


def _with_sink(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, sinks: torch.Tensor,
               scaling: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[..., H, Lq, D]`` queries and ``[..., H, Lk, D]`` keys/values with the sink key in front (see module doc)."""
    lead = key.shape[:-2]
    q = torch.cat([query, query.new_ones(*query.shape[:-1], 1)], dim=-1)
    k = torch.cat([key, key.new_zeros(*key.shape[:-1], 1)], dim=-1)
    sink_key = torch.cat([key.new_zeros(*lead, 1, key.shape[-1]),
                          (sinks / scaling).to(key.dtype).view(-1, 1, 1).expand(*lead, 1, 1)], dim=-1)
    k = torch.cat([sink_key, k], dim=-2)
    v = torch.cat([value, value.new_zeros(*value.shape[:-1], 1)], dim=-1)  # same width: the fused kernels need it
    v = torch.cat([v.new_zeros(*lead, 1, v.shape[-1]), v], dim=-2)
    return q, k, v


def _full(query, key, value, sinks, scaling):
    q, k, v = _with_sink(query, key, value, sinks, scaling)
    q = torch.cat([q.new_zeros(*q.shape[:-2], 1, q.shape[-1]), q], dim=-2)  # row r sees the sink + keys < r
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)[..., 1:, :]


def _sliding(query, key, value, sinks, scaling, window: int):
    B, H, T, D = query.shape
    blocks = -(-T // window)
    pad = blocks * window - T

    def blocked(x):  # [B, H, T, D] -> [B, H, blocks, W, D]
        return F.pad(x, (0, 0, 0, pad)).view(B, H, blocks, window, x.shape[-1])

    q, k, v = blocked(query), blocked(key), blocked(value)
    previous = lambda x: torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, :-1]], dim=2)  # noqa: E731
    k = torch.cat([previous(k), k], dim=3)  # [B, H, blocks, 2W, D]
    v = torch.cat([previous(v), v], dim=3)
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # [B, blocks, H, ., D]
    q, k, v = _with_sink(q, k, v, sinks, scaling)
    w = torch.arange(window)
    # key slot s < W is position (b-1)W + s, visible to query w when w < s; slot W + s when s <= w
    visible = torch.cat([w[:, None] < w[None, :], w[:, None] >= w[None, :]], dim=1)
    visible = torch.cat([torch.ones(window, 1, dtype=torch.bool), visible], dim=1)
    mask = visible.expand(blocks, 1, window, 2 * window + 1).clone()
    mask[0, :, :, 1:window + 1] = False  # the first block has no previous block
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(query.device), scale=scaling)
    return out.transpose(1, 2).reshape(B, H, blocks * window, out.shape[-1])[:, :, :T]


def packed_sink_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, sliding_window=None,
                          s_aux=None, **kwargs):
    """Hugging Face attention-interface function: eager gpt-oss attention for unpadded causal inputs."""
    rep = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    if sliding_window is not None and sliding_window < query.shape[2]:
        out = _sliding(query, key, value, s_aux, scaling, sliding_window)
    else:
        out = _full(query, key, value, s_aux, scaling)
    return out[..., : query.shape[-1]].transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, packed_sink_attention)
