"""The draft model against a step-by-step naive reference that uses the target's own rotary class."""

import pytest
import torch
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding

from draftsmith import build_draft
from reference import naive_draft_unroll
from tiny_models import tiny_gpt_oss_config, tiny_llama_config, tiny_qwen3_config

TARGETS = {
    "gpt_oss": (tiny_gpt_oss_config, GptOssRotaryEmbedding),
    "llama": (tiny_llama_config, LlamaRotaryEmbedding),
    "qwen3": (tiny_qwen3_config, Qwen3RotaryEmbedding),
}


def _draft(kind, seed=0):
    torch.manual_seed(seed)
    config_fn, rotary_class = TARGETS[kind]
    target_config = config_fn()
    draft = build_draft(target_config, draft_vocab_size=200).double()
    for p in draft.parameters():  # norms start at 1; randomize everything so the check has teeth
        torch.nn.init.normal_(p, std=0.3)
    return draft, rotary_class(target_config)


@pytest.mark.parametrize("kind", TARGETS)
def test_unroll_matches_naive_reference(kind):
    draft, hf_rotary = _draft(kind)
    B, T, steps = 2, 13, 4
    ids = torch.randint(0, 512, (B, T))
    aux = torch.randn(B, T, 3 * 64, dtype=torch.float64)
    positions = torch.arange(T).expand(B, T) + torch.tensor([[0], [3000]])  # far positions exercise YaRN
    got = draft.unroll(ids, aux, steps, position_ids=positions)
    want = naive_draft_unroll(draft.state_dict(), draft.config, hf_rotary, ids, aux, steps, position_ids=positions)
    assert got.shape == (steps, B, T, 200)
    assert torch.allclose(got, want, atol=1e-9, rtol=0)


def test_unroll_with_packed_documents_matches_reference():
    draft, hf_rotary = _draft("gpt_oss")
    documents = torch.tensor([[1] * 5 + [2] * 6 + [0] * 2, [1] * 13])
    positions = torch.tensor([list(range(5)) + list(range(6)) + [0, 0], list(range(13))])
    ids = torch.randint(0, 512, (2, 13))
    aux = torch.randn(2, 13, 192, dtype=torch.float64)
    got = draft.unroll(ids, aux, 3, attention_mask=documents, position_ids=positions)
    want = naive_draft_unroll(draft.state_dict(), draft.config, hf_rotary, ids, aux, 3, documents, positions)
    assert torch.allclose(got, want, atol=1e-9, rtol=0)


def test_right_padding_needs_no_mask():
    """With causal attention, padding after the real tokens cannot change them."""
    draft, _ = _draft("llama")
    ids = torch.randint(0, 512, (1, 10))
    aux = torch.randn(1, 10, 192, dtype=torch.float64)
    padded_ids = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    padded_aux = torch.cat([aux, torch.randn(1, 4, 192, dtype=torch.float64)], 1)
    mask = torch.tensor([[1] * 10 + [0] * 4])
    short = draft.unroll(ids, aux, 1)
    long = draft.unroll(padded_ids, padded_aux, 1, attention_mask=mask)
    assert torch.allclose(short[0], long[0, :, :10], atol=1e-12)


def test_step_j_sees_input_ids_shifted_left_by_j():
    """input_ids[t + j] enters slot t at step j, so changing the last token first shows at slot T-1-j."""
    draft, hf_rotary = _draft("qwen3")
    ids = torch.randint(0, 512, (1, 8))
    aux = torch.randn(1, 8, 192, dtype=torch.float64)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 512
    a, b = draft.unroll(ids, aux, 3), draft.unroll(changed, aux, 3)
    # the last token enters slot T-1 at step 0, slot T-2 at step 1, slot T-3 at step 2
    assert torch.equal(a[0, 0, :-1], b[0, 0, :-1]) and not torch.equal(a[0, 0, -1], b[0, 0, -1])
    assert torch.equal(a[1, 0, :-2], b[1, 0, :-2]) and not torch.equal(a[1, 0, -2], b[1, 0, -2])
    assert torch.equal(a[2, 0, :-3], b[2, 0, :-3]) and not torch.equal(a[2, 0, -3], b[2, 0, -3])


def test_gradients_flow_to_trainable_weights_only():
    draft, _ = _draft("gpt_oss")
    out = draft.unroll(torch.randint(0, 512, (1, 6)), torch.randn(1, 6, 192, dtype=torch.float64), 3)
    out.sum().backward()
    assert draft.embed_tokens.weight.grad is None
    assert all(p.grad is not None for n, p in draft.named_parameters() if n != "embed_tokens.weight")


def test_no_biases_anywhere():
    draft, _ = _draft("gpt_oss")
    assert not [n for n, _ in draft.named_parameters() if n.endswith("bias")]


def test_vocab_mapping_validation():
    draft, _ = _draft("gpt_oss")
    d2t = torch.arange(200) * 2 - torch.arange(200)  # target ids 0, 2, 4, ...: d2t[i] = i
    t2d = torch.zeros(512, dtype=torch.bool)
    t2d[torch.arange(200) * 2] = True
    draft.set_vocab_mapping(d2t, t2d)
    assert torch.equal(draft.d2t, d2t)
    t2d[1] = True
    with pytest.raises(ValueError, match="disagree"):
        draft.set_vocab_mapping(d2t, t2d)
    with pytest.raises(ValueError, match="draft_vocab_size"):
        draft.set_vocab_mapping(d2t[:10], t2d)


def test_bf16_aux_states_feed_an_fp32_draft():
    """A bf16 target's aux states go into an fp32 draft without autocast (CPU training)."""
    draft = build_draft(tiny_gpt_oss_config(), draft_vocab_size=200)
    ids, aux = torch.randint(0, 512, (1, 6)), torch.randn(1, 6, 192).bfloat16()
    out = draft.unroll(ids, aux, 2)
    assert out.dtype == torch.float32
    assert torch.equal(out, draft.unroll(ids, aux.float(), 2))
