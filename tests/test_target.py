"""The target wrapper against Hugging Face's own forward: aux states, chunked supervision, hooks, errors."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from draftsmith.model.config import DraftConfigError
from draftsmith.target.capture import (
    TargetLoadOptions,
    TargetMismatchError,
    TargetModel,
    draft_token_ids_from_d2t,
)
from draftsmith.target.registry import UnsupportedTargetError, draft_config_from_target
from tiny_models import VOCAB, save_tiny_target

KINDS = ["gpt_oss", "llama", "qwen3"]


@pytest.fixture(scope="module")
def target_dirs(tmp_path_factory):
    return {kind: save_tiny_target(kind, tmp_path_factory.mktemp(kind)) for kind in KINDS}


def _batch(seed: int = 0, batch: int = 2, length: int = 9):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1, -3:] = 0  # right padding, as the trainer batches
    return input_ids, attention_mask


def _hf_reference(directory, input_ids, attention_mask):
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)


@pytest.mark.parametrize("kind", KINDS)
def test_aux_hidden_states_equal_hf_hidden_states(kind, target_dirs):
    # Out of order on purpose: the engines concatenate in ascending layer order whatever the order given.
    target = TargetModel.from_pretrained(target_dirs[kind], (2, 0, 1), TargetLoadOptions(dtype="float32"))
    input_ids, attention_mask = _batch()
    aux, _ = target.capture_aux(input_ids, attention_mask)

    reference = _hf_reference(target_dirs[kind], input_ids, attention_mask).hidden_states
    hidden = target.hidden_size
    assert aux.shape == (2, 9, 3 * hidden)
    assert target.aux_layer_ids == (0, 1, 2)
    for slot, k in enumerate((0, 1, 2)):
        torch.testing.assert_close(aux[..., slot * hidden:(slot + 1) * hidden], reference[k + 1], rtol=0, atol=0)


def _draft_ids_with_hits_and_misses(reference_argmax: torch.Tensor) -> torch.Tensor:
    """Half of the argmax tokens plus unrelated ids, so both mask values occur."""
    hits = reference_argmax.unique()
    kept = hits[::2]
    others = torch.tensor([i for i in range(VOCAB) if i not in set(hits.tolist())][:150])
    return torch.cat([kept, others]).sort().values


@pytest.mark.parametrize("kind", ["gpt_oss", "qwen3"])
def test_chunked_supervision_equals_full_logits(kind, target_dirs):
    input_ids, attention_mask = _batch(seed=1, length=11)
    logits = _hf_reference(target_dirs[kind], input_ids, attention_mask).logits.float()
    reference_argmax = logits.argmax(-1)
    draft_ids = _draft_ids_with_hits_and_misses(reference_argmax)

    target = TargetModel.from_pretrained(target_dirs[kind], options=TargetLoadOptions(dtype="float32", logits_chunk=5))
    rows_seen = []
    handle = target.model.lm_head.register_forward_hook(lambda m, args, out: rows_seen.append(args[0].shape[0]))
    out = target(input_ids, draft_ids, attention_mask)
    handle.remove()

    assert max(rows_seen) == 5 and sum(rows_seen) == 22, "lm_head must see chunks of positions, never the batch"
    expected_probs = torch.softmax(logits[..., draft_ids], dim=-1)
    torch.testing.assert_close(out.target_probs, expected_probs, rtol=1e-6, atol=1e-7)
    assert out.target_probs.dtype == torch.float32
    assert torch.equal(out.target_argmax, reference_argmax)
    expected_in_vocab = torch.isin(reference_argmax, draft_ids)
    assert torch.equal(out.in_draft_vocab, expected_in_vocab)
    assert expected_in_vocab.any() and not expected_in_vocab.all()


def test_bfloat16_target_keeps_fp32_probabilities(target_dirs):
    target = TargetModel.from_pretrained(target_dirs["llama"], options=TargetLoadOptions(dtype="bfloat16"))
    input_ids, _ = _batch()
    out = target(input_ids, torch.arange(100))
    assert target.model.dtype == torch.bfloat16 and out.aux_hidden_states.dtype == torch.bfloat16
    assert out.target_probs.dtype == torch.float32
    torch.testing.assert_close(out.target_probs.sum(-1), torch.ones(2, 9))


def test_target_is_frozen_and_in_eval_mode(target_dirs):
    target = TargetModel.from_pretrained(target_dirs["qwen3"])
    assert not target.model.training
    assert not any(p.requires_grad for p in target.model.parameters())
    assert target.aux_layer_ids == (0, 1, 2)  # the registry's default for a 4-layer target


def test_hooks_are_removed_after_use_and_after_errors(target_dirs):
    target = TargetModel.from_pretrained(target_dirs["llama"], (0, 1, 2))
    input_ids, attention_mask = _batch()
    target(input_ids, torch.arange(50), attention_mask)
    assert all(len(layer._forward_hooks) == 0 for layer in target.layers)

    def explode(module, args):
        raise RuntimeError("boom")

    failing = target.layers[3].register_forward_pre_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        target.capture_aux(input_ids, attention_mask)
    failing.remove()
    assert all(len(layer._forward_hooks) == 0 for layer in target.layers)


def test_aux_layer_ids_out_of_range_name_both_values(target_dirs):
    with pytest.raises(DraftConfigError, match=r"\[4\] out of range for a target with 4 layers \(valid: 0..3"):
        TargetModel.from_pretrained(target_dirs["gpt_oss"], (0, 1, 4))
    with pytest.raises(DraftConfigError, match=r"\[3\] out of range for a target with 4 layers \(valid: 0..2"):
        TargetModel.from_pretrained(target_dirs["llama"], (0, 1, 3))


def test_draft_vocab_outside_target_vocab_is_refused(target_dirs):
    target = TargetModel.from_pretrained(target_dirs["qwen3"])
    input_ids, _ = _batch()
    with pytest.raises(TargetMismatchError, match=f"target id {VOCAB}, outside the target vocab_size={VOCAB}"):
        target(input_ids, torch.tensor([1, 5, VOCAB]))
    with pytest.raises(TargetMismatchError, match="repeats"):
        target(input_ids, torch.tensor([1, 5, 5]))
    with pytest.raises(TargetMismatchError, match=f"token id 600, outside the target vocab_size={VOCAB}"):
        target(torch.tensor([[1, 600]]), torch.arange(10))


def test_draft_config_for_another_target_is_refused(target_dirs):
    target = TargetModel.from_pretrained(target_dirs["llama"])
    target.check_draft(draft_config_from_target(target_dirs["llama"], draft_vocab_size=100))
    other = draft_config_from_target(save_tiny_target("llama", target_dirs["llama"].parent / "wide", hidden_size=128),
                                     draft_vocab_size=100)
    with pytest.raises(TargetMismatchError, match="target_hidden_size=128 does not match the target's hidden_size=64"):
        target.check_draft(other)


def test_unsupported_architecture_fails_before_loading_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    with pytest.raises(UnsupportedTargetError, match="unsupported target architecture 'gpt2'"):
        TargetModel.from_pretrained(tmp_path)


def test_draft_token_ids_from_d2t():
    target_ids = torch.tensor([0, 3, 4, 9])
    d2t = target_ids - torch.arange(4)
    assert torch.equal(draft_token_ids_from_d2t(d2t), target_ids)


@pytest.mark.parametrize("kind", KINDS)
def test_packed_documents_are_isolated_inside_the_target(kind, target_dirs):
    """Each packed document's aux and final states equal the document run alone through HF.

    Long enough (40 tokens) that gpt-oss's sliding window (32) matters inside a document.
    """
    target = TargetModel.from_pretrained(target_dirs[kind], (0, 1, 2), TargetLoadOptions(dtype="float32"))
    generator = torch.Generator().manual_seed(1)
    first = torch.randint(3, VOCAB, (7,), generator=generator)
    second = torch.randint(3, VOCAB, (40,), generator=generator)
    packed = torch.cat([first, second, torch.zeros(3, dtype=torch.long)])[None]
    document_ids = torch.tensor([[1] * 7 + [2] * 40 + [0] * 3])
    position_ids = torch.tensor([list(range(7)) + list(range(40)) + [0] * 3])
    mask = target.document_attention(document_ids)
    aux, final = target.capture_aux(packed, mask, position_ids)
    for document, (start, stop) in ((first, (0, 7)), (second, (7, 47))):
        reference = _hf_reference(target_dirs[kind], document[None], None)
        torch.testing.assert_close(aux[0, start:stop], torch.cat([reference.hidden_states[k + 1][0] for k in (0, 1, 2)],
                                                                  -1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(final[0, start:stop], reference.hidden_states[-1][0], rtol=1e-5, atol=1e-5)
    assert target.document_attention(torch.tensor([[1] * 9, [1] * 6 + [0] * 3])) is None


@pytest.mark.parametrize("ids", [[[2] * 6 + [0] * 3], [[1] * 4 + [2] * 5], [[0] * 2 + [1] * 7]])
def test_the_target_masks_exactly_when_the_draft_does(ids, target_dirs):
    """One rule (model.attention.needs_document_mask) decides for both; a lone document numbered 2 needs none."""
    from draftsmith.model.attention import needs_document_mask

    target = TargetModel.from_pretrained(target_dirs["llama"], (0, 1, 2), TargetLoadOptions(dtype="float32"))
    ids = torch.tensor(ids)
    assert (target.document_attention(ids) is not None) == needs_document_mask(ids)
