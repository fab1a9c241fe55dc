"""Naive reference implementations the tests check the production code against.

These are written for clarity, not speed: they materialize every score matrix and
share no code with draftsmith.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def naive_ttt_attention(q, k0, v0, diag_k=None, diag_v=None, document_ids=None):
    """Softmax over [step-0 keys at slots <= t of the same document] + [diagonal keys of steps 1..j].

    q [B,H,T,D]; k0, v0 [B,KV,T,D]; diag_k, diag_v [B,KV,T,j,D]; document_ids [B,T] or None.
    """
    B, H, T, D = q.shape
    rep = H // k0.shape[1]
    k0, v0 = k0.repeat_interleave(rep, 1), v0.repeat_interleave(rep, 1)
    scores = q @ k0.transpose(-1, -2) / math.sqrt(D)
    visible = torch.ones(T, T, dtype=torch.bool, device=q.device).tril().expand(B, T, T)
    if document_ids is not None:
        visible = visible & (document_ids[:, :, None] == document_ids[:, None, :])
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    if diag_k is not None:
        diag_k, diag_v = diag_k.repeat_interleave(rep, 1), diag_v.repeat_interleave(rep, 1)
        scores = torch.cat([scores, torch.einsum("bhtd,bhtjd->bhtj", q, diag_k) / math.sqrt(D)], dim=-1)
    probs = scores.softmax(-1)
    out = probs[..., :T] @ v0
    if diag_k is not None:
        out = out + torch.einsum("bhtj,bhtjd->bhtd", probs[..., T:], diag_v)
    return out


def _rms(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def naive_draft_unroll(weights, config, rotary, input_ids, aux, steps, document_ids=None, position_ids=None):
    """The EAGLE-3 draft written out step by step from a state dict, with its architecture options.

    ``rotary(x, position_ids) -> (cos, sin)`` is the *target's* Hugging Face rotary class,
    so this also checks the draft rotates as the target does. The options follow vLLM's
    llama_eagle3.py and speculators' Eagle3DraftModel: ``norm_before_fc`` norms the whole
    concatenation with ``input_norm``, ``fc_norm`` each aux state with ``fc_norm.i``,
    ``norm_before_residual`` makes the residual the normed h, ``norm_output`` carries the
    normed state (and the lm_head reads it without a second norm).
    """
    w = {k: v.double() for k, v in weights.items() if v.is_floating_point()}
    c = config
    B, T = input_ids.shape
    H, KV, D = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    eps = c.rms_norm_eps
    if position_ids is None:
        position_ids = torch.arange(T).expand(B, T)
    aux = aux.double()
    if getattr(c, "norm_before_fc", False):
        aux = _rms(aux, w["input_norm.weight"], eps)
    if getattr(c, "fc_norm", False):
        width = aux.shape[-1] // 3
        aux = torch.cat([_rms(aux[..., i * width:(i + 1) * width], w[f"fc_norm.{i}.weight"], eps)
                         for i in range(3)], -1)
    h = aux @ w["fc.weight"].T
    keys, values, logits = [], [], []
    for j in range(steps):
        ids = torch.cat([input_ids[:, j:], torch.zeros(B, j, dtype=input_ids.dtype)], 1)
        emb = w["embed_tokens.weight"][ids]
        normed_h = _rms(h, w["midlayer.hidden_norm.weight"], eps)
        x = torch.cat([_rms(emb, w["midlayer.input_layernorm.weight"], eps), normed_h], -1)
        q = (x @ w["midlayer.self_attn.q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
        k = (x @ w["midlayer.self_attn.k_proj.weight"].T).view(B, T, KV, D).transpose(1, 2)
        v = (x @ w["midlayer.self_attn.v_proj.weight"].T).view(B, T, KV, D).transpose(1, 2)
        cos, sin = rotary(torch.zeros(1), position_ids + j)
        if cos.shape[-1] == D // 2:  # gpt-oss returns one half; the halves rotate together
            cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        cos, sin = cos.double()[:, None], sin.double()[:, None]
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        keys.append(k)
        values.append(v)
        diag_k = torch.stack(keys[1:], 3) if j else None
        diag_v = torch.stack(values[1:], 3) if j else None
        a = naive_ttt_attention(q, keys[0], values[0], diag_k, diag_v, document_ids)
        residual = normed_h if getattr(c, "norm_before_residual", False) else h
        r = residual + a.transpose(1, 2).reshape(B, T, H * D) @ w["midlayer.self_attn.o_proj.weight"].T
        m = _rms(r, w["midlayer.post_attention_layernorm.weight"], eps)
        m = (F.silu(m @ w["midlayer.mlp.gate_proj.weight"].T) * (m @ w["midlayer.mlp.up_proj.weight"].T))
        h = r + m @ w["midlayer.mlp.down_proj.weight"].T
        normed = _rms(h, w["norm.weight"], eps)
        if getattr(c, "norm_output", False):
            h = normed
        logits.append(normed @ w["lm_head.weight"].T)
    return torch.stack(logits)


def yarn_inv_freq_float64(head_dim, base, factor, original, beta_fast, beta_slow):
    """The YaRN formula of docs/rope.md (truncate = false) evaluated in float64 with math only."""
    half = head_dim // 2
    low = half * math.log(original / (beta_fast * 2 * math.pi)) / math.log(base)
    high = half * math.log(original / (beta_slow * 2 * math.pi)) / math.log(base)
    out = []
    for i in range(half):
        freq = base ** (2 * i / head_dim)
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        out.append((1 / (factor * freq)) * ramp + (1 / freq) * (1 - ramp))
    return torch.tensor(out, dtype=torch.float64), 0.1 * math.log(factor) + 1
