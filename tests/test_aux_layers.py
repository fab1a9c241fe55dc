"""Aux layers: the saved config field by field, what each engine captures from it, final-layer
capture, and published gpt-oss layouts.

The engines' capture is re-implemented here from their code (docs/aux-layers.md cites it),
independently of draftsmith.checkpoint.engine_aux, and must feed exactly the states the
draft was trained on.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GptOssConfig, LlamaConfig

from draftsmith import build_draft, draft_config_from_target, load_draft
from draftsmith.checkpoint.layout import engine_config
from draftsmith.checkpoint.aux_ids import trained_hidden_state_indices
from draftsmith.engines import sglang, vllm
from draftsmith.target.capture import TargetLoadOptions, TargetModel
from tiny_models import VOCAB, save_tiny_target, tiny_gpt_oss_config

IDS = "eagle_aux_hidden_state_layer_ids"
GPT_OSS_20B = GptOssConfig(num_hidden_layers=24, num_local_experts=32)
LLAMA_8B = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                       num_hidden_layers=32)


CASES = {
    # name: (target config, aux_layer_ids given, trained hidden-state indices, engine id fields expected)
    "gpt-oss default": (GPT_OSS_20B, None, [2, 12, 21], {}),
    # SGLang 0.5.23 takes gpt-oss ids as hidden-state indices when the largest is L, else adds 1.
    "gpt-oss custom, final layer, unsorted": (
        GPT_OSS_20B, [23, 5, 16], [6, 17, 24],
        {"eagle_config": {IDS: [6, 17, 24]}, IDS: [6, 17, 24]}),
    "gpt-oss custom, no final layer": (
        GPT_OSS_20B, [3, 9, 15], [4, 10, 16],
        {"eagle_config": {IDS: [3, 9, 15]}, IDS: [4, 10, 16]}),
    "llama default": (LLAMA_8B, None, [2, 16, 29], {}),
    "llama custom": (LLAMA_8B, [30, 0, 15], [1, 16, 31], {"eagle_config": {IDS: [0, 15, 30]}, IDS: [1, 16, 31]}),
}


@pytest.mark.parametrize("case", CASES)
def test_saved_config_field_by_field(case):
    target, ids, trained, id_fields = CASES[case]
    config = draft_config_from_target(target, aux_layer_ids=ids)
    got = engine_config(config)
    L, model_type = target.num_hidden_layers, target.model_type
    assert got["draftsmith"]["aux_hidden_state_indices"] == trained
    assert got["draftsmith"]["target_num_hidden_layers"] == L
    assert {k: got[k] for k in ("eagle_config", IDS) if k in got} == id_fields
    for flag in ("norm_before_fc", "fc_norm", "norm_output", "norm_before_residual"):
        assert got[flag] is False
    for runner in vllm.RUNNERS:
        assert vllm.aux_capture(got, L, runner).indices == tuple(trained), runner
    assert sglang.aux_capture(got, L, model_type).indices == tuple(trained)
    assert trained_hidden_state_indices(got, model_type, L) == tuple(trained)


def test_the_previous_gpt_oss_writing_is_read_one_layer_late_by_sglang():
    """draftsmith wrote gpt-oss nested ids as hidden-state indices for any custom list until SGLang 0.5.23 was
    read: it adds 1 to a list without the final layer (gpt-oss-20b, aux layers 3, 9, 15)."""
    old = {"eagle_config": {IDS: [4, 10, 16]}}
    assert sglang.aux_capture(old, 24, "gpt_oss").indices == (5, 11, 17)


def test_final_layer_output_is_captured_before_the_final_norm(tmp_path):
    """gpt-oss: aux layer L-1 is the last layer's output as the engines take it, not HF's normed hidden_states[L]."""
    path = save_tiny_target("gpt_oss", tmp_path / "target")
    target = TargetModel.from_pretrained(path, (3, 0, 1), TargetLoadOptions(dtype="float32"))
    input_ids = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    aux, _ = target.capture_aux(input_ids)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    seen = {}
    model.model.norm.register_forward_pre_hook(lambda module, args: seen.setdefault("pre_norm", args[0]))
    with torch.no_grad():
        hidden = model(input_ids=input_ids, output_hidden_states=True).hidden_states
    want = torch.cat([hidden[1], hidden[2], seen["pre_norm"]], -1)  # ascending: layers 0, 1, 3
    torch.testing.assert_close(aux, want, rtol=0, atol=0)
    assert not torch.allclose(seen["pre_norm"], hidden[4])


def _published_gpt_oss_layout(tmp_path, draft):
    """NVIDIA's gpt-oss-120b-Eagle3 layout at toy size: nested output-of-layer ids only (``[1, 17, 32]`` in
    the real one), ``norm_before_fc`` inside eagle_config, ``input_norm.weight``, no draftsmith record."""
    d = tmp_path / "nvidia"
    draft.save_pretrained(d)
    config = json.loads((d / "config.json").read_text())
    for key in ("draftsmith", IDS, "norm_before_fc", "fc_norm", "norm_output", "rope_parameters"):
        config.pop(key)
    config["eagle_config"] = {IDS: [0, 1, 2], "use_aux_hidden_state": True, "norm_before_fc": True}
    (d / "config.json").write_text(json.dumps(config))
    tensors = load_file(d / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k != "t2d"}, d / "model.safetensors")
    return d


def test_loads_a_published_gpt_oss_layout(tmp_path):
    torch.manual_seed(0)
    draft = build_draft(tiny_gpt_oss_config(), draft_vocab_size=100, aux_layer_ids=[0, 1, 2], norm_before_fc=True)
    for p in draft.parameters():
        torch.nn.init.normal_(p, std=0.2)
    loaded = load_draft(_published_gpt_oss_layout(tmp_path, draft))
    assert loaded.config.aux_layer_ids == (0, 1, 2) and loaded.config.norm_before_fc
    ids, aux = torch.randint(0, VOCAB, (1, 6)), torch.randn(1, 6, 192)
    assert torch.equal(loaded.unroll(ids, aux, 3), draft.unroll(ids, aux, 3))
