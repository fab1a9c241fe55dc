"""The CUDA path of the lean TTT attention.

Tests marked ``cuda`` run the real kernels against the float64 reference on a GPU
(``pytest -m cuda``; ``benchmarks/gpu_check.sh`` runs them) and are skipped without one. The
unmarked ones check here, without a GPU, what can be checked: the CUDA kernels' argument
plumbing through their meta (shape) implementations, and the import-time signature check.
"""

import re

import pytest
import torch

from draftsmith import build_draft
from draftsmith.model import attention
from draftsmith.model.attention import check_kernel_signatures, document_mask, ttt_attention
from reference import naive_draft_unroll, naive_ttt_attention
from tiny_models import tiny_gpt_oss_config

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _random_documents(B, T, seed):
    """Packed rows: runs of random lengths with ids 1, 2, ..., then right padding (id 0)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(B):
        row, doc = [], 1
        while len(row) < T - 5:
            row += [doc] * int(torch.randint(1, T // 3 + 2, (1,), generator=g))
            doc += 1
        rows.append((row[: T - 5] + [0] * T)[:T])
    return torch.tensor(rows)


def _inputs(B, H, KV, T, D, j, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    q, k0, v0 = make(B, H, T, D), make(B, KV, T, D), make(B, KV, T, D)
    diag = (make(B, KV, T, j, D), make(B, KV, T, j, D)) if j else (None, None)
    return [q, k0, v0, *diag]


# ----------------------------------------------------------------------------- without a GPU


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("packed", [False, True], ids=["causal", "packed"])
def test_cuda_kernel_plumbing_on_meta_tensors(monkeypatch, dtype, packed):
    """Forward and backward through the CUDA kernels' meta implementations: every argument the
    kernels get is accepted, and shapes and dtypes come out as the merge expects (GQA 4:1, a
    length that is not a multiple of the kernel's 32-slot log-sum-exp padding)."""
    monkeypatch.setattr(attention, "block0_kernels", lambda device: (attention._cuda_forward, attention._cuda_backward))
    B, H, KV, T, D, j = 2, 8, 2, 100, 64, 3
    leaves = [x.to("meta", dtype).requires_grad_() for x in _inputs(B, H, KV, T, D, j)]
    visible = document_mask(_random_documents(B, T, 0).to("meta")) if packed else None
    out = ttt_attention(*leaves, visible)
    assert out.shape == (B, H, T, D) and out.dtype == dtype and out.device.type == "meta"
    grads = torch.autograd.grad(out, leaves, torch.ones_like(out))
    for leaf, grad in zip(leaves, grads):
        assert grad.shape == leaf.shape and grad.dtype == dtype


def test_signature_check_names_the_op_and_torch_version():
    name, (arguments, outputs) = next(iter(attention.KERNEL_SIGNATURES.items()))
    check_kernel_signatures({name: (arguments, outputs)})  # this torch: passes
    renamed = ("q: Tensor",) + arguments[1:]
    with pytest.raises(RuntimeError, match=rf"torch {re.escape(torch.__version__)}.*aten::{name} takes \(query: Tensor"):
        check_kernel_signatures({name: (renamed, outputs)})
    keyword = arguments + ("*window: Optional[int]",)
    with pytest.raises(RuntimeError, match="no keyword argument 'window: Optional.int.'"):
        check_kernel_signatures({name: (keyword, outputs)})
    with pytest.raises(RuntimeError, match=rf"aten::{name} now requires value, which draftsmith does not pass"):
        check_kernel_signatures({name: (arguments[:2], outputs)})
    with pytest.raises(RuntimeError, match="aten::_no_such_attention does not exist"):
        check_kernel_signatures({"_no_such_attention": (arguments, outputs)})


# ----------------------------------------------------------------------------- on a GPU


def _reference_on_gpu(inputs, documents):
    """The naive reference in float64 on the GPU (at 4,096 tokens it would crawl on a CPU)."""
    leaves = [x.double().cuda().requires_grad_() for x in inputs if x is not None]
    diag = [] if len(leaves) == 5 else [None, None]
    return leaves, naive_ttt_attention(*leaves, *diag, None if documents is None else documents.cuda())


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("packed", [False, True], ids=["causal", "packed"])
@pytest.mark.parametrize("T,j", [(11, 0), (11, 1), (11, 6), (333, 0), (333, 3), (4096, 6)])
def test_cuda_fp32_values_and_gradients_match_float64_reference(T, j, packed):
    B, H, KV, D = 2, 8, 2, 64
    inputs = _inputs(B, H, KV, T, D, j, seed=T + j)
    documents = _random_documents(B, T, T) if packed else None
    cuda = [x.float().cuda().requires_grad_() for x in inputs if x is not None]
    visible = None if documents is None else document_mask(documents.cuda())
    got = ttt_attention(*cuda, *([None, None] if not j else []), visible)
    want_leaves, want = _reference_on_gpu(inputs, documents)
    assert got.dtype == torch.float32
    assert (got.double() - want).abs().max() < 1e-4
    grad_out = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, cuda, grad_out.float())
    want_grads = torch.autograd.grad(want, want_leaves, grad_out)
    for g, w in zip(got_grads, want_grads):
        assert (g.double() - w).abs().max() < 1e-4 * max(1.0, w.abs().max().item())


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("packed", [False, True], ids=["causal", "packed"])
@pytest.mark.parametrize("T", [333, 4096])
def test_cuda_bf16_autocast_matches_fp32_reference(T, packed):
    """bf16 q/k/v through the kernels, the merge in fp32: within bf16 rounding of the reference."""
    B, H, KV, D, j = 2, 8, 2, 64, 4
    inputs = [x.bfloat16() for x in _inputs(B, H, KV, T, D, j, seed=7)]
    documents = _random_documents(B, T, 3) if packed else None
    cuda = [x.cuda().requires_grad_() for x in inputs]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = ttt_attention(*cuda, None if documents is None else document_mask(documents.cuda()))
    assert got.dtype == torch.bfloat16
    want_leaves, want = _reference_on_gpu(inputs, documents)
    assert (got.double() - want).abs().max() < 3e-2
    grad_out = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, cuda, grad_out.bfloat16())
    want_grads = torch.autograd.grad(want, want_leaves, grad_out)
    for g, w in zip(got_grads, want_grads):
        assert (g.double() - w).abs().max() < 5e-2 * max(1.0, w.abs().max().item())


@pytest.mark.cuda
@requires_cuda
def test_cuda_draft_unroll_and_gradients_match_cpu():
    """The whole draft (rotary, GQA, packed documents, TTT-4) on CUDA in fp32 against the
    float64 step-by-step reference on CPU, and its parameter gradients against CPU float64."""
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

    torch.manual_seed(0)
    config = tiny_gpt_oss_config()
    draft = build_draft(config, draft_vocab_size=200).double()
    for p in draft.parameters():
        torch.nn.init.normal_(p, std=0.3)
    documents = torch.tensor([[1] * 40 + [2] * 50 + [0] * 7, [1] * 97])
    positions = torch.tensor([list(range(40)) + list(range(50)) + [0] * 7, list(range(97))])
    ids = torch.randint(0, 512, (2, 97))
    aux = torch.randn(2, 97, 3 * config.hidden_size, dtype=torch.float64)
    want = naive_draft_unroll(draft.state_dict(), draft.config, GptOssRotaryEmbedding(config), ids, aux, 4,
                              documents, positions)
    gpu = build_draft(config, draft_vocab_size=200).cuda()
    gpu.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in draft.state_dict().items()})
    got = gpu.unroll(ids.cuda(), aux.float().cuda(), 4, attention_mask=documents.cuda(),
                     position_ids=positions.cuda())
    assert (got.double().cpu() - want).abs().max() < 1e-3 * want.abs().max()
    weights = torch.randn_like(want)
    (got * weights.float().cuda()).sum().backward()
    (draft.unroll(ids, aux, 4, attention_mask=documents, position_ids=positions) * weights).sum().backward()
    cpu_grads = dict(draft.named_parameters())
    for name, p in gpu.named_parameters():
        if p.requires_grad:
            w = cpu_grads[name].grad
            assert (p.grad.double().cpu() - w).abs().max() < 1e-3 * max(1.0, w.abs().max().item()), name
