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
from draftsmith.checkpoint.engine import engine_config
from draftsmith.checkpoint.engine_aux import aux_verdicts, engine_captures, trained_hidden_state_indices
from draftsmith.target.capture import TargetLoadOptions, TargetModel
from tiny_models import VOCAB, save_tiny_target, tiny_gpt_oss_config

IDS = "eagle_aux_hidden_state_layer_ids"
GPT_OSS_20B = GptOssConfig(num_hidden_layers=24, num_local_experts=32)
LLAMA_8B = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                       num_hidden_layers=32)


def vllm_capture(config: dict, num_layers: int) -> list[int]:
    """vLLM since #42764, from vllm/v1/worker/gpu_model_runner.py and models/interfaces.py.

    ``_get_eagle3_aux_layers_from_config``: top-level ids, else ``eagle_config``'s, unchanged;
    none: the model's ``get_eagle3_default_aux_hidden_state_layers`` = (2, L//2, L-3).
    ``EagleModelMixin._maybe_add_hidden_state`` is called with 0 before the first layer and
    idx + 1 after layer idx (hidden + residual, before the final norm), in loop order.
    """
    ids = config.get(IDS) or (config.get("eagle_config") or {}).get(IDS) or (2, num_layers // 2, num_layers - 3)
    return [slot for slot in range(num_layers + 1) if slot in ids]


def sglang_capture(config: dict, num_layers: int, model_type: str) -> list[int]:
    """Current SGLang, from python/sglang/srt/models/{llama,qwen2,gpt_oss}.py.

    ``set_eagle3_layers_to_capture``: no ids -> [2, L//2, L-3]; Llama-family ids -> id + 1;
    gpt-oss since #32334 -> the ids themselves (hidden-state boundaries), the final one
    captured before the final norm. ``forward`` appends hidden + residual *before* layer i.
    """
    nested = (config.get("eagle_config") or {}).get(IDS)
    if nested is None:
        capture = [2, num_layers // 2, num_layers - 3]
    elif model_type == "gpt_oss":
        capture = list(nested)
    else:
        capture = [i + 1 for i in nested]
    captured = [i for i in range(num_layers) if i in capture]
    if model_type == "gpt_oss" and num_layers in capture:
        captured.append(num_layers)
    return captured


CASES = {
    # name: (target config, aux_layer_ids given, trained hidden-state indices, engine id fields expected)
    "gpt-oss default": (GPT_OSS_20B, None, [2, 12, 21], {}),
    "gpt-oss custom, final layer, unsorted": (
        GPT_OSS_20B, [23, 5, 16], [6, 17, 24],
        {"eagle_config": {IDS: [6, 17, 24]}, IDS: [6, 17, 24]}),
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
    assert vllm_capture(got, L) == trained
    assert sglang_capture(got, L, model_type) == trained
    assert all(v.level == "warning" for v in aux_verdicts(got, L, model_type))  # no current engine misreads it
    assert trained_hidden_state_indices(got, model_type) == tuple(trained)


def test_only_old_engine_versions_are_warned_about():
    """Default ids: nothing to say. Custom gpt-oss ids: SGLang before #32334 adds 1 (no single config fixes both)."""
    for case in ("gpt-oss default", "llama default"):
        target, ids, _, _ = CASES[case]
        assert aux_verdicts(engine_config(draft_config_from_target(target)), target.num_hidden_layers,
                            target.model_type) == []
    got = engine_config(draft_config_from_target(GPT_OSS_20B, aux_layer_ids=[5, 16, 23]))
    verdicts = aux_verdicts(got, 24, "gpt_oss")
    assert {v.level for v in verdicts} == {"warning"}
    assert any("SGLang gpt-oss before #32334" in v.message and "out of its reach" in v.message for v in verdicts)
    assert any("vLLM before #36063" in v.message for v in verdicts)  # the final layer's output came with #36063


@pytest.mark.parametrize("config", [
    {}, {IDS: [3, 9, 20]}, {"eagle_config": {IDS: [3, 9, 20]}}, {"eagle_config": {IDS: [1, 9, 20]}},
    {"eagle_config": {IDS: [24, 30, 36]}}, {IDS: [0, 17, 36], "eagle_config": {IDS: [4, 5, 6]}},
])
@pytest.mark.parametrize("model_type", ["gpt_oss", "llama"])
def test_engine_captures_agree_with_the_engines_code(config, model_type):
    rows = {(c.engine, c.current): c for c in engine_captures(config, 36, model_type)}
    want_sglang = sglang_capture(config, 36, model_type)
    for (engine, current), capture in rows.items():
        if not current:
            continue
        want = vllm_capture(config, 36) if engine == "vLLM" else want_sglang
        assert capture.indices == (tuple(want) if len(want) == 3 else None), (engine, capture)


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
    """NVIDIA's gpt-oss-120b-Eagle3-v3 layout at toy size: nested boundaries (the last one = L),
    ``norm_before_fc`` inside eagle_config, ``input_norm.weight``, no draftsmith record."""
    d = tmp_path / "nvidia"
    draft.save_pretrained(d)
    config = json.loads((d / "config.json").read_text())
    for key in ("draftsmith", IDS, "norm_before_fc", "fc_norm", "norm_output", "rope_parameters"):
        config.pop(key)
    config["eagle_config"] = {IDS: [2, 3, 4], "use_aux_hidden_state": True, "norm_before_fc": True}
    (d / "config.json").write_text(json.dumps(config))
    tensors = load_file(d / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k != "t2d"}, d / "model.safetensors")
    return d


def test_loads_a_published_gpt_oss_layout(tmp_path):
    torch.manual_seed(0)
    draft = build_draft(tiny_gpt_oss_config(), draft_vocab_size=100, aux_layer_ids=[1, 2, 3], norm_before_fc=True)
    for p in draft.parameters():
        torch.nn.init.normal_(p, std=0.2)
    loaded = load_draft(_published_gpt_oss_layout(tmp_path, draft))
    assert loaded.config.aux_layer_ids == (1, 2, 3) and loaded.config.norm_before_fc
    ids, aux = torch.randint(0, VOCAB, (1, 6)), torch.randn(1, 6, 192)
    assert torch.equal(loaded.unroll(ids, aux, 3), draft.unroll(ids, aux, 3))
