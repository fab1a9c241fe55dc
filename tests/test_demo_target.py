"""The shipped tiny gpt-oss target: what it is, what its build recorded, and its exact training attention."""

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, GptOssForCausalLM

from draftsmith.demo import attention
from tiny_models import tiny_gpt_oss_config

ASSETS = Path(str(resources.files("draftsmith.demo") / "assets"))


def test_shipped_target_is_a_long_context_gpt_oss_with_harmony():
    config = AutoConfig.from_pretrained(ASSETS / "target")
    assert config.model_type == "gpt_oss" and config.num_local_experts > config.num_experts_per_tok > 1
    assert set(config.layer_types) == {"sliding_attention", "full_attention"} and config.sliding_window < 8192
    rope = config.rope_parameters
    assert rope["rope_type"] == "yarn" and rope["factor"] == 32 and rope["original_max_position_embeddings"] == 256
    assert config.max_position_embeddings == 8192 == 32 * 256
    tokenizer = AutoTokenizer.from_pretrained(ASSETS / "target")
    assert len(tokenizer) == config.vocab_size
    chat = json.loads((ASSETS / "validation.jsonl").read_text().splitlines()[0])
    text = tokenizer.apply_chat_template(chat["messages"], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|start|>system<|message|>") and text.endswith("<|start|>assistant")
    assert "<|channel|>" in tokenizer.get_vocab() and tokenizer.eos_token == "<|return|>"
    shipped = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert shipped <= 25 * 2**20


def test_build_record_covers_the_whole_context():
    build = json.loads((ASSETS / "build.json").read_text())
    buckets = build["loss_by_position"]
    assert buckets[0]["start"] <= 256 and buckets[-1]["end"] == 8192
    assert all(b["tokens"] > 0 for b in buckets) and "--seed" in build["command"] and build["seed"] == 0


@pytest.mark.parametrize("length", [7, 45])  # shorter than the window, and several windows with a ragged end
def test_packed_sink_attention_matches_eager_with_gradients(length):
    torch.manual_seed(0)
    model = GptOssForCausalLM(tiny_gpt_oss_config(sliding_window=8))
    for parameter in model.parameters():
        if parameter.dim() == 1:  # sinks and biases start at zero; make them matter
            torch.nn.init.normal_(parameter, std=0.5)
    ids = torch.randint(0, 512, (2, length))
    results = []
    for implementation in ("eager", attention.NAME):
        model.config._attn_implementation = implementation
        model.zero_grad()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        results.append((out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (eager_logits, eager_grads), (packed_logits, packed_grads) = results
    torch.testing.assert_close(packed_logits, eager_logits, rtol=0, atol=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert eager_grads["model.layers.0.self_attn.sinks"].abs().max() > 0

