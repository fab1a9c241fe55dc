"""Lean TTT attention against the naive reference: values and gradients."""

import pytest
import torch

from draftsmith.model.attention import document_mask, ttt_attention
from reference import naive_ttt_attention

B, H, KV, T, D = 2, 4, 2, 11, 8
DOCUMENTS = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 3, 3, 0, 0], [1] * 11])


def _inputs(j, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    q, k0, v0 = make(B, H, T, D), make(B, KV, T, D), make(B, KV, T, D)
    diag = (make(B, KV, T, j, D), make(B, KV, T, j, D)) if j else (None, None)
    return q, k0, v0, *diag


@pytest.mark.parametrize("documents", [None, DOCUMENTS], ids=["causal", "packed"])
@pytest.mark.parametrize("j", [0, 1, 3, 6])
def test_lean_equals_naive_values_and_gradients(j, documents):
    inputs = _inputs(j, torch.float64)
    visible = None if documents is None else document_mask(documents)
    lean = ttt_attention(*inputs, visible)
    naive = naive_ttt_attention(*inputs, documents)
    assert torch.allclose(lean, naive, atol=1e-12, rtol=0)
    grad_out = torch.randn_like(lean)
    leaves = [x for x in inputs if x is not None]
    lean_grads = torch.autograd.grad(lean, leaves, grad_out)
    naive_grads = torch.autograd.grad(naive, leaves, grad_out)
    for got, want in zip(lean_grads, naive_grads):
        assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_lean_fp32_close_to_float64_reference():
    inputs = _inputs(3, torch.float32)
    lean = ttt_attention(*inputs)
    naive = naive_ttt_attention(*[x.double() for x in inputs])
    assert (lean.double() - naive).abs().max() < 1e-5


def test_real_tokens_never_see_padding_or_other_documents():
    """Changing keys of another document (or padding) must not change a token's output."""
    q, k0, v0, dk, dv = _inputs(2, torch.float64)
    visible = document_mask(DOCUMENTS)
    before = ttt_attention(q, k0, v0, dk, dv, visible)
    k0b, v0b = k0.detach().clone(), v0.detach().clone()
    k0b[0, :, 4:], v0b[0, :, 4:] = 100.0, -100.0  # documents 2, 3 and padding of row 0
    after = ttt_attention(q, k0b, v0b, dk, dv, visible)
    assert torch.equal(before[0, :, :4], after[0, :, :4])
    assert not torch.allclose(before[0, :, 4:7], after[0, :, 4:7])


def test_gradcheck_small():
    inputs = [x.detach()[:1, :, :5].clone().requires_grad_() for x in _inputs(2, torch.float64)]
    assert torch.autograd.gradcheck(lambda *a: ttt_attention(*a), tuple(inputs))


def test_bf16_under_autocast_matches_fp32_reference():
    """Under autocast the kernels see bf16 q/k/v, but the merge and its backward stay in fp32."""
    q, k0, v0, dk, dv = [x.detach().bfloat16().requires_grad_() for x in _inputs(3, torch.float32)]
    visible = document_mask(DOCUMENTS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lean = ttt_attention(q, k0, v0, dk, dv, visible)
    assert lean.dtype == torch.bfloat16
    leaves32 = [x.detach().float().requires_grad_() for x in (q, k0, v0, dk, dv)]
    naive = naive_ttt_attention(*leaves32, DOCUMENTS)
    assert (lean.float() - naive).abs().max() < 2e-2
    grad_out = torch.randn_like(naive)
    got = torch.autograd.grad(lean, (q, k0, v0, dk, dv), grad_out.bfloat16())
    want = torch.autograd.grad(naive, leaves32, grad_out)
    for g, w in zip(got, want):
        assert (g.float() - w).abs().max() < 5e-2 * max(1.0, w.abs().max().item())


@pytest.mark.parametrize("ids", [
    [[1, 1, 1, 0], [1, 1, 0, 0]],  # one right-padded document per row
    [[2, 2, 2, 0], [1, 1, 1, 1]],  # a lone document that is not numbered 1
    [[1, 1, 2, 2], [1, 1, 1, 0]],  # packed
    [[0, 1, 1, 1], [1, 1, 1, 1]],  # left padding
    [[1, 0, 1, 0], [1, 1, 1, 1]],  # a hole
    [[0, 0, 0, 0], [1, 1, 0, 0]],  # an all-padding row
])
def test_needs_document_mask_exactly_when_causal_attention_would_leak(ids):
    """Brute force: a mask is needed iff some real query could see, causally, a key the mask hides."""
    from draftsmith.model.attention import needs_document_mask

    ids = torch.tensor(ids)
    visible = document_mask(ids)[:, 0]
    leaks = any(not visible[b, q, k] for b in range(ids.shape[0]) for q in range(ids.shape[1]) if ids[b, q] != 0
                for k in range(q + 1))
    assert needs_document_mask(ids) == leaks
