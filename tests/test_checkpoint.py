"""Save -> load round trips, the engine config field by field, and other tools' layouts."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import GptOssConfig

from draftsmith import build_draft, draft_config_from_target, load_draft
from draftsmith.checkpoint.layout import CheckpointError, engine_config
from draftsmith.checkpoint.speculators import export_speculators
from tiny_models import tiny_gpt_oss_config, tiny_llama_config

KEYS = {
    "fc.weight", "midlayer.input_layernorm.weight", "midlayer.hidden_norm.weight",
    "midlayer.post_attention_layernorm.weight", "midlayer.self_attn.q_proj.weight",
    "midlayer.self_attn.k_proj.weight", "midlayer.self_attn.v_proj.weight", "midlayer.self_attn.o_proj.weight",
    "midlayer.mlp.gate_proj.weight", "midlayer.mlp.up_proj.weight", "midlayer.mlp.down_proj.weight",
    "norm.weight", "lm_head.weight", "embed_tokens.weight", "d2t", "t2d",
}


def _random_draft(config_fn=tiny_gpt_oss_config, seed=0):
    torch.manual_seed(seed)
    draft = build_draft(config_fn(), draft_vocab_size=100)
    for p in draft.parameters():
        torch.nn.init.normal_(p, std=0.2)
    d2t = torch.arange(100) * 4 - torch.arange(100)  # draft id i -> target id 4i
    t2d = torch.zeros(512, dtype=torch.bool)
    t2d[torch.arange(100) * 4] = True
    draft.set_vocab_mapping(d2t, t2d)
    return draft


def _logits(draft, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 512, (2, 9), generator=g)
    return draft.unroll(ids, torch.randn(2, 9, 192, generator=g), 3)


@pytest.mark.parametrize("config_fn", [tiny_gpt_oss_config, tiny_llama_config])
def test_round_trip_gives_identical_logits(tmp_path, config_fn):
    draft = _random_draft(config_fn)
    draft.save_pretrained(tmp_path / "draft")
    loaded = load_draft(tmp_path / "draft")
    assert loaded.config == draft.config
    assert torch.equal(_logits(draft), _logits(loaded))
    assert torch.equal(loaded.d2t, draft.d2t) and torch.equal(loaded.t2d, draft.t2d)
    assert not loaded.training  # ready to draft or evaluate


def test_stored_weight_names_reads_headers_only(tmp_path):
    from draftsmith.checkpoint.layout import stored_weight_names

    draft = _random_draft()
    draft.save_pretrained(tmp_path / "draft")
    assert stored_weight_names(tmp_path / "draft") == set(draft.state_dict())


def test_saved_keys_and_dtypes(tmp_path):
    _random_draft().save_pretrained(tmp_path / "draft")
    tensors = load_file(tmp_path / "draft" / "model.safetensors")
    assert set(tensors) == KEYS
    assert tensors["d2t"].dtype == torch.int64 and tensors["d2t"].shape == (100,)
    assert tensors["t2d"].dtype == torch.bool and tensors["t2d"].shape == (512,)
    assert sorted(p.name for p in (tmp_path / "draft").iterdir()) == ["config.json", "model.safetensors"]


def test_engine_config_matches_design_for_gpt_oss_20b():
    """docs/checkpoint-format.md, field by field, for gpt-oss-20b (24 layers)."""
    config = draft_config_from_target(GptOssConfig(num_hidden_layers=24, num_local_experts=32))
    got = engine_config(config, torch.bfloat16)
    yarn = {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096, "beta_fast": 32.0,
            "beta_slow": 1.0, "truncate": False}
    expected = {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "num_hidden_layers": 1,
        "hidden_size": 2880, "intermediate_size": 17280, "num_attention_heads": 64, "num_key_value_heads": 8,
        "head_dim": 64, "hidden_act": "silu", "rms_norm_eps": 1e-5, "vocab_size": 201088,
        "draft_vocab_size": 32000, "target_hidden_size": 2880, "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False, "norm_before_residual": False, "norm_before_fc": False,
        "fc_norm": False, "norm_output": False,
        "max_position_embeddings": 131072, "rope_theta": 150000.0, "rope_scaling": yarn,
        "rope_parameters": {"rope_theta": 150000.0, **yarn}, "torch_dtype": "bfloat16",
        # no engine aux ids: outputs of layers 1, 11, 20 are every engine's default (tests/test_aux_layers.py)
    }
    draftsmith_meta = got.pop("draftsmith")
    assert got == expected
    assert draftsmith_meta["target_model_type"] == "gpt_oss" and draftsmith_meta["target_num_hidden_layers"] == 24
    assert draftsmith_meta["aux_hidden_state_indices"] == [2, 12, 21]
    for leftover in ("layer_types", "sliding_window", "quantization_config", "num_local_experts"):
        assert leftover not in got


def test_refuses_to_overwrite_and_replaces_atomically(tmp_path):
    first, second = _random_draft(seed=0), _random_draft(seed=5)
    first.save_pretrained(tmp_path / "draft")
    with pytest.raises(FileExistsError, match="not empty"):
        second.save_pretrained(tmp_path / "draft")
    assert torch.equal(_logits(load_draft(tmp_path / "draft")), _logits(first))
    second.save_pretrained(tmp_path / "draft", overwrite=True)
    assert torch.equal(_logits(load_draft(tmp_path / "draft")), _logits(second))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["draft"]  # no staging or retired leftovers


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    import draftsmith.checkpoint.layout as checkpoint

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        _random_draft().save_pretrained(tmp_path / "draft")
    assert list(tmp_path.iterdir()) == []


def _rewrite(directory, rename=None, drop=(), config_update=None, config_drop=()):
    tensors = load_file(directory / "model.safetensors")
    tensors = {(rename(k) if rename else k): v for k, v in tensors.items() if k not in drop}
    save_file(tensors, directory / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    config.update(config_update or {})
    for key in config_drop:
        config.pop(key, None)
    (directory / "config.json").write_text(json.dumps(config))


def test_loads_other_tools_layouts(tmp_path):
    draft = _random_draft()
    want = _logits(draft)
    # model.-prefixed and layers.0.* names, no t2d, no draftsmith metadata, legacy rope only, and aux ids only
    # nested as SGLang-era tools (SpecForge) write them: outputs of layers, a list that starts at 1
    d = tmp_path / "other"
    draft.save_pretrained(d)
    _rewrite(d, rename=lambda k: "model." + k.replace("midlayer.", "layers.0."), drop=("t2d",),
             config_update={"eagle_config": {"eagle_aux_hidden_state_layer_ids": [1, 2, 3]}},
             config_drop=("draftsmith", "rope_parameters", "eagle_aux_hidden_state_layer_ids"))
    other = load_draft(d)
    assert torch.equal(_logits(other), want) and torch.equal(other.t2d, draft.t2d)
    assert other.config.aux_layer_ids == (1, 2, 3)
    # legacy pytorch_model.bin
    b = tmp_path / "bin"
    draft.save_pretrained(b)
    torch.save(load_file(b / "model.safetensors"), b / "pytorch_model.bin")
    (b / "model.safetensors").unlink()
    assert torch.equal(_logits(load_draft(b)), want)


def test_speculators_export(tmp_path):
    draft = _random_draft()
    export_speculators(draft, tmp_path / "spec", verifier="openai/gpt-oss-20b")
    config = json.loads((tmp_path / "spec" / "config.json").read_text())
    assert "model_type" not in config  # a top-level model_type disables vLLM's speculators adapter
    assert config["speculators_model_type"] == "eagle3" and config["norm_before_residual"] is False
    assert config["eagle_aux_hidden_state_layer_ids"] == [i + 1 for i in draft.config.aux_layer_ids]  # hidden states
    assert config["speculators_config"]["verifier"] == {"name_or_path": "openai/gpt-oss-20b",
                                                        "architectures": ["GptOssForCausalLM"]}
    assert config["transformer_layer_config"]["rope_parameters"]["truncate"] is False
    keys = set(load_file(tmp_path / "spec" / "model.safetensors"))
    assert {k.replace("layers.0.", "midlayer.") for k in keys} == KEYS
    assert torch.equal(_logits(load_draft(tmp_path / "spec")), _logits(draft))


def test_missing_files_and_corruption_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        load_draft(tmp_path / "nowhere")
    d = tmp_path / "draft"
    _random_draft().save_pretrained(d)
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable safetensors file"):
        load_draft(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_draft(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_draft(d)
    (d / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json: missing"):
        load_draft(d)


@pytest.mark.parametrize("change, message", [
    (dict(config_update={"num_hidden_layers": 2}), "num_hidden_layers is 2"),
    (dict(config_update={"attention_bias": True}), "biases"),
    (dict(drop=("d2t", "t2d")), "no d2t although draft_vocab_size 100 < vocab_size 512"),
    (dict(rename=lambda k: k.replace("hidden_norm", "hiddden_norm")), "does not have: midlayer.hiddden_norm"),
    (dict(config_update={"hidden_size": 32}), "has shape"),
])
def test_load_refuses_what_the_draft_cannot_represent(tmp_path, change, message):
    d = tmp_path / "draft"
    _random_draft().save_pretrained(d)
    _rewrite(d, **change)
    with pytest.raises(CheckpointError, match=message):
        load_draft(d)


def test_cli_errors_are_one_line(tmp_path, capsys):
    from draftsmith.cli import main

    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "config.json").write_text("[1, 2]")
    assert main(["inspect", str(tmp_path / "list")]) == 2
    assert "expected a JSON object, got list" in capsys.readouterr().err
    _random_draft().save_pretrained(tmp_path / "draft")
    assert main(["export", str(tmp_path / "draft"), str(tmp_path / "spec"), "--verifier", "x",
                 "--speculative-tokens", "0"]) == 2
    assert "speculative_tokens must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "spec").exists()


def test_serve_commands_quote_paths_and_agree_on_the_depth():
    import json
    import shlex

    from draftsmith.checkpoint.serve import serve_commands

    commands = serve_commands("my target", "runs/my draft", 5)
    sglang = shlex.split(commands["SGLang"])
    assert sglang[sglang.index("--model-path") + 1] == "my target"
    assert sglang[sglang.index("--speculative-draft-model-path") + 1] == "runs/my draft"
    assert sglang[sglang.index("--speculative-num-steps") + 1] == "5"
    assert sglang[sglang.index("--speculative-num-draft-tokens") + 1] == "6"
    vllm = shlex.split(commands["vLLM"])
    assert vllm[:3] == ["vllm", "serve", "my target"]
    assert json.loads(vllm[vllm.index("--speculative-config") + 1]) == {
        "method": "eagle3", "model": "runs/my draft", "num_speculative_tokens": 5}
