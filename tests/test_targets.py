"""Draft configs derived from each supported target family."""

import pytest
from transformers import (GptOssConfig, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config, Qwen3MoeConfig,
                          Gemma2Config)

from draftsmith import build_draft, draft_config_from_target
from draftsmith.model.config import DraftConfigError
from draftsmith.target.registry import UnsupportedTargetError
from tiny_models import save_tiny_target, tiny_gpt_oss_config

GPT_OSS_20B = dict(num_hidden_layers=24, num_local_experts=32, vocab_size=201088)


def test_gpt_oss_20b_draft_config():
    c = draft_config_from_target(GptOssConfig(**GPT_OSS_20B))
    assert (c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (2880, 64, 8, 64)
    assert c.intermediate_size == 17280  # 6 x H, the width of the public gpt-oss drafts
    assert c.aux_layer_ids == (1, 11, 20)
    assert c.vocab_size == 201088 and c.draft_vocab_size == 32000
    assert c.target_hidden_size == 2880 and c.max_position_embeddings == 131072
    assert c.rope_parameters == {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                                 "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0,
                                 "truncate": False}


@pytest.mark.parametrize("config, mlp", [
    (LlamaConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                 num_hidden_layers=32), 14336),
    (Qwen2Config(hidden_size=3584, intermediate_size=18944, num_attention_heads=28, num_key_value_heads=4,
                 num_hidden_layers=28), 18944),
    (Qwen3Config(hidden_size=4096, intermediate_size=12288, num_attention_heads=32, num_key_value_heads=8,
                 head_dim=128, num_hidden_layers=36), 12288),
    (Qwen3MoeConfig(hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_attention_heads=32,
                    num_key_value_heads=4, head_dim=128, num_hidden_layers=48), 6144),
    (MistralConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                   num_hidden_layers=32), 14336),
])
def test_dense_families_follow_the_target(config, mlp):
    c = draft_config_from_target(config)
    L = config.num_hidden_layers
    assert c.hidden_size == config.hidden_size and c.intermediate_size == mlp
    assert c.num_key_value_heads == config.num_key_value_heads
    assert c.head_dim == (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    assert c.aux_layer_ids == (1, L // 2 - 1, L - 4)
    assert c.rope_parameters["rope_theta"] == config.rope_parameters["rope_theta"]
    assert c.target_model_type == config.model_type


def test_target_only_fields_do_not_reach_the_draft():
    c = draft_config_from_target(GptOssConfig(**GPT_OSS_20B)).to_dict()
    for leftover in ("layer_types", "sliding_window", "num_local_experts", "attention_bias", "quantization_config"):
        assert leftover not in c


def test_from_directory_and_dict(tmp_path):
    path = save_tiny_target("gpt_oss", tmp_path / "target")
    from_dir = draft_config_from_target(path)
    from_obj = draft_config_from_target(tiny_gpt_oss_config())
    from_dict = draft_config_from_target(tiny_gpt_oss_config().to_dict())
    assert from_dir == from_obj == from_dict
    assert from_dir.aux_layer_ids == (0, 1, 2)  # 4 layers: spread over the capturable layers 0..2


def test_overrides_and_unknown_override():
    c = draft_config_from_target(GptOssConfig(), intermediate_size=1024, draft_vocab_size=8000)
    assert c.intermediate_size == 1024 and c.draft_vocab_size == 8000
    with pytest.raises(DraftConfigError, match=r"unknown draft override\(s\) \['vocab_size'\].*follow the target"):
        draft_config_from_target(GptOssConfig(), vocab_size=1000)
    with pytest.raises(DraftConfigError, match="unknown draft override"):
        draft_config_from_target(GptOssConfig(), hiden_size=3)


def test_unknown_architecture_lists_supported():
    with pytest.raises(UnsupportedTargetError, match="'gemma2'.*gpt_oss, llama, mistral, qwen2, qwen3, qwen3_moe"):
        build_draft(Gemma2Config())


@pytest.mark.parametrize("ids, message", [
    ([1, 2], "exactly three"),
    ([1, 2, 3, 4], "exactly three"),
    ([1, 1, 5], "distinct"),
    ([1, 5, 36], r"\[36\] out of range for a target with 36 layers \(valid: 0..35"),
    ([-1, 5, 9], r"\[-1\] out of range"),
    ([1.0, 5, 9], "integers"),
])
def test_bad_aux_layer_ids(ids, message):
    with pytest.raises(DraftConfigError, match=message):
        draft_config_from_target(GptOssConfig(), aux_layer_ids=ids)


def test_draft_vocab_larger_than_target_is_capped():
    """A recipe written for a large target (32000) still runs against a 512-token one."""
    assert draft_config_from_target(tiny_gpt_oss_config(), draft_vocab_size=10_000).draft_vocab_size == 512
    assert draft_config_from_target(tiny_gpt_oss_config()).draft_vocab_size == 512
    with pytest.raises(ValueError, match="positive integer"):
        draft_config_from_target(tiny_gpt_oss_config(), draft_vocab_size=0)


def test_final_layer_output_only_where_every_engine_captures_it():
    """gpt-oss: vLLM 0.32.0 and SGLang 0.5.23 capture the last layer's output; SGLang's Llama path cannot."""
    assert draft_config_from_target(GptOssConfig(num_hidden_layers=24), aux_layer_ids=[23, 1, 11]).aux_layer_ids == (
        1, 11, 23)
    with pytest.raises(DraftConfigError, match=r"\[31\] out of range.*valid: 0..30.*last layer \(31\) is not "
                                                r"capturable for this target family"):
        draft_config_from_target(LlamaConfig(num_hidden_layers=32), aux_layer_ids=[1, 15, 31])



def test_tiny_build_draft_parameters():
    draft = build_draft(tiny_gpt_oss_config(), draft_vocab_size=100)
    shapes = {n: tuple(p.shape) for n, p in draft.state_dict().items()}
    assert shapes["fc.weight"] == (64, 192)
    assert shapes["midlayer.self_attn.q_proj.weight"] == (64, 128)
    assert shapes["midlayer.self_attn.k_proj.weight"] == (32, 128)
    assert shapes["lm_head.weight"] == (100, 64)
    assert shapes["d2t"] == (100,) and shapes["t2d"] == (512,)
