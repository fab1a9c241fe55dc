"""The draft's rotary can be overridden (the RoPE experiment's arms); the default stays the target's."""

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from draftsmith.model.rope import rotary_from_config
from draftsmith.target.registry import draft_config_from_target
from draftsmith.train.recipe import RecipeError, recipe_from_dict
from draftsmith.train.setup import build_run_draft
from tiny_models import tiny_gpt_oss_config

ARMS = {
    "plain": {"rope_type": "default", "rope_theta": 10000.0},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 256},
}


def hf_cos_sin(rope: dict, max_positions: int, positions: torch.Tensor):
    """Hugging Face's own Llama rotary for the same schedule: an independent computation."""
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, head_dim=16, max_position_embeddings=max_positions,
                         rope_parameters=dict(rope))
    x = torch.zeros(1, positions.shape[-1], 16)
    return LlamaRotaryEmbedding(config)(x, positions)


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_overridden_rotary_rotates_as_hf_does(arm):
    config = draft_config_from_target(tiny_gpt_oss_config(), rope_parameters=ARMS[arm], max_position_embeddings=512)
    assert config.max_position_embeddings == 512 and config.rope_parameters["rope_type"] == ARMS[arm]["rope_type"]
    positions = torch.tensor([[0, 1, 255, 511, 4000, 8191]])
    cos, sin = rotary_from_config(config.to_dict() | {"model_type": "llama"})(positions)
    want_cos, want_sin = hf_cos_sin(ARMS[arm], 512, positions)
    torch.testing.assert_close(cos, want_cos, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, want_sin, rtol=0, atol=1e-6)


def test_default_is_the_targets_rotary():
    target = tiny_gpt_oss_config()
    config = draft_config_from_target(target)
    assert config.rope_parameters["rope_type"] == "yarn" and config.max_position_embeddings == 8192
    overridden = draft_config_from_target(target, rope_parameters=ARMS["plain"])
    assert overridden.max_position_embeddings == 8192 and overridden.rope_parameters != config.rope_parameters


def test_recipe_field_reaches_the_draft(tmp_path):
    base = {"target": {"path": "t"}, "data": {"train": ["x.jsonl"]}, "draft": {"draft_vocab_size": 256}}
    recipe = recipe_from_dict(base, overrides=['draft.rope_parameters={"rope_type": "default", "rope_theta": 10000}',
                                               "draft.max_position_embeddings=256"])
    draft = build_run_draft(recipe, tiny_gpt_oss_config(), None)
    assert draft.config.rope_parameters == {"rope_type": "default", "rope_theta": 10000.0}
    assert draft.config.max_position_embeddings == 256
    assert build_run_draft(recipe_from_dict(base), tiny_gpt_oss_config(), None).config.rope_parameters[
        "rope_type"] == "yarn"
    with pytest.raises(RecipeError, match="draft.rope_parameters: expected a mapping"):
        recipe_from_dict(base, overrides=["draft.rope_parameters=yarn"])
    with pytest.raises(RecipeError, match="draft.rope_parameters: .*'dynamic'"):
        build_run_draft(recipe_from_dict(base, overrides=['draft.rope_parameters={"rope_type": "dynamic"}']),
                        tiny_gpt_oss_config(), None)


def test_experiment_arms_differ_only_where_they_say(tmp_path):
    """Every trained arm has the same data, steps and tokens per step; rotary and context as labelled."""
    from draftsmith.demo.rope_experiment import ARMS, SETTINGS, arm_settings, long_chats
    from draftsmith.demo.run import assets, demo_recipe

    train_file = long_chats(assets() / "train.jsonl", tmp_path / "long.jsonl")
    shipped = len((assets() / "train.jsonl").read_text().splitlines())
    assert len(train_file.read_text().splitlines()) == shipped // 4
    built = {}
    for arm in ARMS:
        if arm.trained_as is None:
            recipe = demo_recipe(tmp_path / arm.name, arm_settings(arm, SETTINGS, train_file))
            built[arm.name] = (recipe, build_run_draft(recipe, assets() / "target", None).config)
    for recipe, _ in built.values():
        assert recipe.data.train == [str(train_file)]
        assert recipe.training.max_steps == SETTINGS.train_steps
        assert recipe.data.max_length * recipe.training.micro_batch_size == SETTINGS.max_length * SETTINGS.micro_batch_size
    rope = {name: config.rope_parameters["rope_type"] for name, (_, config) in built.items()}
    assert rope == {"a-yarn": "yarn", "b-plain": "default", "c-llama3": "llama3", "e-yarn-long": "yarn"}
    assert built["b-plain"][1].max_position_embeddings == SETTINGS.max_length
    assert built["e-yarn-long"][0].data.max_length == 4 * SETTINGS.max_length
    windowed = [arm for arm in ARMS if arm.trained_as]
    assert [(arm.trained_as, arm.draft_window) for arm in windowed] == [("b-plain", SETTINGS.max_length)]


def test_seed_flag_reaches_every_arms_training(tmp_path, monkeypatch):
    """`draftsmith demo --rope-experiment --seed N` trains every arm with seed N (the noise the docs state)."""
    import draftsmith.demo.rope_experiment as experiment
    from draftsmith.cli import main
    from draftsmith.demo.run import assets, demo_recipe

    seen = {}

    def record(out, settings, **kwargs):
        seen["settings"] = settings
        return "table"

    monkeypatch.setattr(experiment, "run_rope_experiment", record)
    assert main(["demo", "--rope-experiment", "--seed", "3", "--out", str(tmp_path / "out")]) == 0
    settings = seen["settings"]
    train_file = experiment.long_chats(assets() / "train.jsonl", tmp_path / "long.jsonl")
    seeds = {arm.name: demo_recipe(tmp_path / arm.name, experiment.arm_settings(arm, settings, train_file)).training.seed
             for arm in experiment.ARMS if arm.trained_as is None}
    assert seeds == {"a-yarn": 3, "b-plain": 3, "c-llama3": 3, "e-yarn-long": 3}
    assert settings.train_steps == experiment.SETTINGS.train_steps  # only the seed changed
