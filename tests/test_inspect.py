"""`draftsmith inspect` on hand-crafted checkpoints: one per silent-failure slip, plus a good one.

The checkpoints are written here with plain json + safetensors, not with draftsmith's
writer, because the inspector's job is to judge checkpoints other tools produced.
"""

import json
import re

import pytest
import torch
from safetensors.torch import save_file

from draftsmith.cli import main
from draftsmith.checkpoint.inspect import inspect_checkpoint
from tiny_models import save_tiny_target

H, HEADS, KV, HD, INTER, VOCAB, DRAFT_VOCAB, LAYERS = 64, 4, 2, 16, 384, 512, 100, 4
YARN = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
        "original_max_position_embeddings": 256}


def good_config():
    return {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "num_hidden_layers": 1,
        "hidden_size": H, "intermediate_size": INTER, "num_attention_heads": HEADS, "num_key_value_heads": KV,
        "head_dim": HD, "hidden_act": "silu", "rms_norm_eps": 1e-5, "vocab_size": VOCAB,
        "draft_vocab_size": DRAFT_VOCAB, "target_hidden_size": H, "tie_word_embeddings": False,
        "max_position_embeddings": 8192, "rope_theta": 150000.0, "rope_scaling": dict(YARN),
        "rope_parameters": {"rope_theta": 150000.0, **YARN},
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": [0, 1, 2]},
        "eagle_aux_hidden_state_layer_ids": [1, 2, 3],
    }


def good_weights():
    w = {
        "embed_tokens.weight": torch.randn(VOCAB, H), "fc.weight": torch.randn(H, 3 * H),
        "norm.weight": torch.ones(H), "lm_head.weight": torch.randn(DRAFT_VOCAB, H),
        "d2t": torch.zeros(DRAFT_VOCAB, dtype=torch.int64), "t2d": torch.arange(VOCAB) < DRAFT_VOCAB,
    }
    for norm in ("input_layernorm", "hidden_norm", "post_attention_layernorm"):
        w[f"midlayer.{norm}.weight"] = torch.ones(H)
    for name, shape in (("q", (HEADS * HD, 2 * H)), ("k", (KV * HD, 2 * H)), ("v", (KV * HD, 2 * H)),
                        ("o", (H, HEADS * HD))):
        w[f"midlayer.self_attn.{name}_proj.weight"] = torch.randn(shape)
    for name, shape in (("gate", (INTER, H)), ("up", (INTER, H)), ("down", (H, INTER))):
        w[f"midlayer.mlp.{name}_proj.weight"] = torch.randn(shape)
    return w


def write(directory, config, weights):
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    save_file(weights, directory / "model.safetensors")
    return directory


def _drop(d, *keys):
    for key in keys:
        d.pop(key)
    return d


def _renamed(weights, old, new):
    return {k.replace(old, new): v for k, v in weights.items()}


SLIPS = {
    "architectures": (lambda c, w: (dict(c, architectures=["LlamaForCausalLM"]), w),
                      r"architectures is \['LlamaForCausalLM'\]"),
    "num_layers": (lambda c, w: (dict(c, num_hidden_layers=2), w), "num_hidden_layers is 2; SGLang refuses"),
    "layers.0 names": (lambda c, w: (c, _renamed(w, "midlayer.", "layers.0.")),
                       "weights named layers.0.*.*SGLang silently skips them"),
    "unknown weights": (lambda c, w: (c, dict(w, **{"fc_norm.0.weight": torch.ones(H)})),
                        r"unrecognized weights \['fc_norm.0.weight'\]; SGLang silently skips them, vLLM refuses"),
    "model. prefix": (lambda c, w: (c, {"model." + k: v for k, v in w.items()}),
                      "carry a 'model.' prefix.*vLLM adds 'model.' itself"),
    "missing d2t": (lambda c, w: (c, _drop(w, "d2t")), "no d2t .*vLLM maps a missing d2t to the identity"),
    "qkv biases": (lambda c, w: (c, dict(w, **{"midlayer.self_attn.q_proj.bias": torch.zeros(HEADS * HD)})),
                   "bias weights.*q_proj.bias.*silently drops them"),
    "attention_bias": (lambda c, w: (dict(c, attention_bias=True), w), "attention_bias is true"),
    "null target_hidden_size": (lambda c, w: (dict(c, target_hidden_size=None), w),
                                "target_hidden_size is null or missing"),
    "layer_types": (lambda c, w: (dict(c, layer_types=["sliding_attention"]), w),
                    "layer_types is set.*leftover from the target"),
    "sliding_window": (lambda c, w: (dict(c, sliding_window=128), w), "sliding_window is set \\(128\\)"),
    "missing head_dim": (lambda c, w: (_drop(c, "head_dim"), w), "head_dim missing"),
    "rope only v5": (lambda c, w: (_drop(c, "rope_theta", "rope_scaling"), w),
                     "RoPE written only as rope_parameters"),
    "rope only legacy": (lambda c, w: (_drop(c, "rope_parameters"), w),
                         "RoPE written only as rope_theta/rope_scaling"),
    "rope spellings disagree": (lambda c, w: (dict(c, rope_theta=10000.0), w), "disagree"),
    "yarn without truncate": (lambda c, w: (dict(c, rope_scaling=_drop(dict(YARN), "truncate")), w),
                              "YaRN rope_scaling without 'truncate'"),
    "no sglang aux ids": (lambda c, w: (_drop(c, "eagle_config"), w),
                          "eagle_config.eagle_aux_hidden_state_layer_ids missing; SGLang"),
    "no vllm aux ids": (lambda c, w: (_drop(c, "eagle_aux_hidden_state_layer_ids"), w),
                        "top-level eagle_aux_hidden_state_layer_ids missing; vLLM"),
    "aux ids off by one": (lambda c, w: (dict(c, eagle_aux_hidden_state_layer_ids=[0, 1, 2]), w),
                           r"aux layer ids disagree: SGLang \[0, 1, 2\] needs vLLM \[1, 2, 3\]"),
    "wrong shape": (lambda c, w: (c, dict(w, **{"fc.weight": torch.randn(H, 2 * H)})),
                    r"fc.weight has shape \(64, 128\), config.json implies \(64, 192\)"),
}


def test_good_checkpoint_passes(tmp_path, capsys):
    write(tmp_path / "good", good_config(), good_weights())
    save_tiny_target("gpt_oss", tmp_path / "target")
    assert inspect_checkpoint(tmp_path / "good", target=tmp_path / "target") == []
    assert main(["inspect", str(tmp_path / "good"), "--target", str(tmp_path / "target")]) == 0
    assert "0 error(s)" in capsys.readouterr().out


@pytest.mark.parametrize("slip", SLIPS)
def test_each_slip_is_flagged(tmp_path, capsys, slip):
    mutate, message = SLIPS[slip]
    config, weights = mutate(good_config(), good_weights())
    write(tmp_path / "bad", config, weights)
    errors = [f.message for f in inspect_checkpoint(tmp_path / "bad") if f.level == "error"]
    assert any(re.search(message, e) for e in errors), errors
    assert main(["inspect", str(tmp_path / "bad")]) == 1
    assert "ERROR:" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (dict(rope_parameters={"rope_theta": 150000.0, **dict(YARN, factor=16.0)},
          rope_scaling=dict(YARN, factor=16.0)), r"differs from the target's RoPE in \['factor'\]"),
    (dict(target_hidden_size=128), "target_hidden_size 128 but the target's hidden_size is 64"),
    (dict(eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 1, 3]}, eagle_aux_hidden_state_layer_ids=[1, 2, 4]),
     r"aux layer ids \[3\] cannot be captured from a 4-layer target"),
])
def test_target_mismatches(tmp_path, change, message):
    save_tiny_target("gpt_oss", tmp_path / "target")
    weights = good_weights()
    if change.get("target_hidden_size"):
        weights["fc.weight"] = torch.randn(H, 3 * 128)
    write(tmp_path / "bad", dict(good_config(), **change), weights)
    errors = [f.message for f in inspect_checkpoint(tmp_path / "bad", target=tmp_path / "target")]
    assert any(re.search(message, e) for e in errors), errors


def test_unreadable_input_exit_code(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err
