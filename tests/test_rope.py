"""The draft's rotary must equal the target's own, in fp32, at every position."""

import math

import pytest
import torch
from transformers import GptOssConfig, LlamaConfig, Qwen3Config
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding

from draftsmith import rotary_from_config
from draftsmith.model.rope import RopeConfigError, rope_parameters_from_config
from reference import yarn_inv_freq_float64

TTT_STEPS = 7

LLAMA31 = dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
               rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
QWEN3_8B = dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                max_position_embeddings=40960, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})

CASES = {
    "gpt-oss": (GptOssConfig(), GptOssRotaryEmbedding),  # YaRN 150000, factor 32, 4096 -> 131072
    "llama-3.1": (LlamaConfig(**LLAMA31), LlamaRotaryEmbedding),
    "qwen3": (Qwen3Config(**QWEN3_8B), Qwen3RotaryEmbedding),
}


def _hf_cos_sin(hf_rotary, position_ids):
    cos, sin = hf_rotary(torch.zeros(1, dtype=torch.float32), position_ids)
    if cos.shape[-1] == hf_rotary.inv_freq.shape[0]:  # gpt-oss returns one half per head
        cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    return cos, sin


@pytest.mark.parametrize("name", CASES)
def test_cos_sin_equal_target_rotary_at_every_position(name):
    config, hf_class = CASES[name]
    hf_rotary, ours = hf_class(config), rotary_from_config(config)
    max_pos = config.max_position_embeddings
    assert ours.inv_freq.dtype == torch.float32
    assert torch.equal(ours.inv_freq, hf_rotary.inv_freq)
    for offset in (0, 1, TTT_STEPS - 1):  # TTT step j runs at positions p + j
        positions = (torch.arange(max_pos - offset) + offset)[None]
        cos, sin = ours(positions)
        hf_cos, hf_sin = _hf_cos_sin(hf_rotary, positions)
        assert cos.dtype == sin.dtype == torch.float32
        assert cos.shape == (1, max_pos - offset, config.head_dim)
        assert (cos - hf_cos).abs().max().item() == 0.0
        assert (sin - hf_sin).abs().max().item() == 0.0


def test_batched_ragged_positions_match_target():
    config, hf_class = CASES["gpt-oss"]
    positions = torch.randint(0, config.max_position_embeddings, (3, 37))
    cos, sin = rotary_from_config(config)(positions)
    hf_cos, hf_sin = _hf_cos_sin(hf_class(config), positions)
    assert cos.shape == (3, 37, 64)
    assert torch.equal(cos, hf_cos) and torch.equal(sin, hf_sin)


def test_gpt_oss_yarn_against_float64_formula():
    """The formula of docs/rope.md in float64; the fp32 schedule may differ only by fp32 rounding."""
    config = GptOssConfig()
    rotary = rotary_from_config(config)
    inv_freq64, concentration = yarn_inv_freq_float64(64, 150000.0, 32.0, 4096, 32.0, 1.0)
    assert concentration == pytest.approx(1.3466, abs=1e-4)
    assert rotary.attention_scaling == pytest.approx(concentration, rel=1e-15)
    # fp32 pow/div/mix: a few ulps of relative error per frequency.
    rel = ((rotary.inv_freq.double() - inv_freq64) / inv_freq64).abs().max().item()
    assert rel < 8 * 2**-24
    positions = torch.arange(config.max_position_embeddings)
    cos, sin = rotary(positions[None])
    angle64 = positions.double()[:, None] * inv_freq64[None]
    # The fp32 angle p * inv_freq carries the frequency error times p plus one rounding of the product
    # (|angle| <= 131072 rad, so ulp(angle) reaches 2^-7); cos/sin add a few ulps. Bound per element:
    bound = concentration * (angle64 * 8 * 2**-24 + angle64 * 2**-24 + 4 * 2**-24) + 4 * 2**-24
    assert ((cos[0, :, :32].double() - concentration * angle64.cos()).abs() <= bound).all()
    assert ((sin[0, :, :32].double() - concentration * angle64.sin()).abs() <= bound).all()
    # Without the fp32 bound the check would be meaningless; at short positions it is tight.
    assert (cos[0, :4096, :32].double() - concentration * angle64[:4096].cos()).abs().max() < 1e-3


def test_truncate_matters_for_gpt_oss():
    """The floor/ceil variant moves gpt-oss frequencies a lot; we must not fall back to it."""
    exact = rotary_from_config(GptOssConfig()).inv_freq
    params = dict(GptOssConfig().rope_parameters, truncate=True)
    floored = rotary_from_config(GptOssConfig(rope_parameters=params)).inv_freq
    assert ((floored - exact).abs() / exact).max() > 0.5


def test_legacy_and_v5_spellings_agree():
    legacy = {"model_type": "gpt_oss", "head_dim": 64, "hidden_size": 2880, "num_attention_heads": 64,
              "max_position_embeddings": 131072, "rope_theta": 150000,
              "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                               "truncate": False, "original_max_position_embeddings": 4096}}
    assert rope_parameters_from_config(legacy) == rope_parameters_from_config(GptOssConfig())
    assert torch.equal(rotary_from_config(legacy).inv_freq, GptOssRotaryEmbedding(GptOssConfig()).inv_freq)


def test_old_type_key_and_linear_scaling():
    config = {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 4096,
              "rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 4.0}}
    hf = LlamaRotaryEmbedding(LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=4096,
                                          rope_parameters={"rope_type": "linear", "rope_theta": 10000.0,
                                                           "factor": 4.0}))
    ours = rotary_from_config(config)
    positions = torch.arange(4096)[None]
    assert torch.equal(ours(positions)[0], _hf_cos_sin(hf, positions)[0])


@pytest.mark.parametrize("rope_type", ["dynamic", "longrope", "proportional"])
def test_unsupported_rope_type_is_an_error(rope_type):
    config = {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 4096,
              "rope_parameters": {"rope_type": rope_type, "rope_theta": 10000.0, "factor": 2.0}}
    with pytest.raises(RopeConfigError, match=f"unsupported rope_type '{rope_type}'.*supported: default"):
        rotary_from_config(config)


def test_partial_rotary_factor_is_an_error():
    config = {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 4096,
              "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    with pytest.raises(RopeConfigError, match="partial_rotary_factor=0.5"):
        rotary_from_config(config)


def test_rotation_preserves_norm_up_to_scaling():
    """A property independent of any implementation: rotation keeps each pair's norm."""
    rotary = rotary_from_config(GptOssConfig())
    cos, sin = rotary(torch.tensor([[100000]]))
    scale = rotary.attention_scaling
    assert torch.allclose(cos**2 + sin**2, torch.full_like(cos, scale**2), rtol=1e-5)
    assert math.isclose(scale, 0.1 * math.log(32) + 1)
