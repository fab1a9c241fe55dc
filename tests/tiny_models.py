"""Tiny target models built from configs and saved with ``save_pretrained``.

No machine here can download from a model hub, so every test target is built from a
config of the real architecture at toy size and loaded back through the same
``from_pretrained`` path a user's checkpoint takes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GptOssConfig, GptOssForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from draftsmith import demo

VOCAB = 512


def tiny_gpt_oss_config(**overrides) -> GptOssConfig:
    """The tiny gpt-oss (the demo's target shape) with test token ids."""
    return demo.tiny_gpt_oss_config(**{"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **overrides})


def tiny_llama_config(**overrides) -> LlamaConfig:
    """Llama-3.1 shape in miniature, with its llama3 rope scaling."""
    values = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 512},
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def tiny_qwen3_config(**overrides) -> Qwen3Config:
    values = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    values.update(overrides)
    return Qwen3Config(**values)


MODEL_CLASSES = {"gpt_oss": GptOssForCausalLM, "llama": LlamaForCausalLM, "qwen3": Qwen3ForCausalLM}
CONFIGS = {"gpt_oss": tiny_gpt_oss_config, "llama": tiny_llama_config, "qwen3": tiny_qwen3_config}


def save_tiny_target(kind: str, directory: Path, seed: int = 0, **overrides) -> Path:
    """Build a randomly initialized tiny target of ``kind`` and save it to ``directory``."""
    torch.manual_seed(seed)
    model = MODEL_CLASSES[kind](CONFIGS[kind](**overrides))
    model.save_pretrained(directory)
    return Path(directory)
