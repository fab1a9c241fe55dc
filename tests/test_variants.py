"""The architecture options (norm_before_fc, fc_norm, norm_output, norm_before_residual):
math against the naive reference, save -> load with identical logits, published layouts,
training, and warm starts whose aux ids are not in ascending order."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

from draftsmith import build_draft, load_draft
from draftsmith.inspect import inspect_checkpoint
from draftsmith.checkpoint.speculators import export_speculators
from draftsmith.model.config import DraftConfigError
from draftsmith.train.loop import Trainer, train
from draftsmith.train.recipe import load_recipe
from reference import naive_draft_unroll
from tiny_models import VOCAB, tiny_gpt_oss_config
from train_workspace import make_workspace, write_recipe

VARIANTS = ["norm_before_fc", "fc_norm", "norm_output", "norm_before_residual"]
EXTRA_WEIGHTS = {"norm_before_fc": {"input_norm.weight": (192,)},
                 "fc_norm": {f"fc_norm.{i}.weight": (64,) for i in range(3)}}


def _draft(variant, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    draft = build_draft(tiny_gpt_oss_config(), draft_vocab_size=100, **{variant: True}).to(dtype)
    for p in draft.parameters():  # norms start at 1; randomize everything so the checks have teeth
        torch.nn.init.normal_(p, mean=1.0 if p.dim() == 1 else 0.0, std=0.3)
    return draft


def _inputs(seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    aux = torch.randn(2, 9, 192, generator=g, dtype=dtype) * torch.tensor([1.0, 30.0, 300.0]).repeat_interleave(64)
    return torch.randint(0, VOCAB, (2, 9), generator=g), aux


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_naive_reference(variant):
    draft = _draft(variant, dtype=torch.float64)
    ids, aux = _inputs(dtype=torch.float64)
    got = draft.unroll(ids, aux, 4)
    want = naive_draft_unroll(draft.state_dict(), draft.config, GptOssRotaryEmbedding(tiny_gpt_oss_config()),
                              ids, aux, 4)
    assert torch.allclose(got, want, atol=1e-9, rtol=0)
    plain = build_draft(tiny_gpt_oss_config(), draft_vocab_size=100).double()  # the option changes the result
    plain.load_state_dict(draft.state_dict(), strict=False)
    assert not torch.allclose(plain.unroll(ids, aux, 4), got, atol=1e-3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_round_trip_gives_identical_logits(tmp_path, variant):
    draft = _draft(variant)
    draft.save_pretrained(tmp_path / "draft")
    config = json.loads((tmp_path / "draft" / "config.json").read_text())
    assert [name for name in VARIANTS if config[name]] == [variant]
    if variant == "norm_before_fc":
        assert config["eagle_config"]["norm_before_fc"] is True  # where NVIDIA's drafts keep it, read first
    tensors = load_file(tmp_path / "draft" / "model.safetensors")
    for name, shape in EXTRA_WEIGHTS.get(variant, {}).items():
        assert tensors[name].shape == shape
    loaded = load_draft(tmp_path / "draft")
    assert loaded.config == draft.config
    ids, aux = _inputs()
    assert torch.equal(loaded.unroll(ids, aux, 3), draft.unroll(ids, aux, 3))
    # SGLang 0.5.23 and vLLM 0.32.0 build every option but norm_before_residual, which SGLang has not.
    report = inspect_checkpoint(tmp_path / "draft")
    assert report.verdicts() == {"sglang": "wrong" if variant == "norm_before_residual" else "ok", "vllm": "ok"}


def test_norm_before_fc_and_fc_norm_are_exclusive():
    with pytest.raises(DraftConfigError, match="norm_before_fc and fc_norm are exclusive"):
        build_draft(tiny_gpt_oss_config(), draft_vocab_size=100, norm_before_fc=True, fc_norm=True)


def test_speculators_norm_before_residual_loads_as_vllm_runs_it(tmp_path):
    draft = _draft("norm_before_residual")
    export_speculators(draft, tmp_path / "spec", verifier="openai/gpt-oss-20b")
    config = json.loads((tmp_path / "spec" / "config.json").read_text())
    assert config["norm_before_residual"] is True
    ids, aux = _inputs()
    loaded = load_draft(tmp_path / "spec")
    assert loaded.config.norm_before_residual and loaded.config.target_model_type == "gpt_oss"
    assert torch.equal(loaded.unroll(ids, aux, 3), draft.unroll(ids, aux, 3))
    del config["norm_before_residual"]  # vLLM's speculators adapter reads a missing field as true
    (tmp_path / "spec" / "config.json").write_text(json.dumps(config))
    assert load_draft(tmp_path / "spec").config.norm_before_residual


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("variants"))


@pytest.mark.parametrize("variant", ["norm_before_fc", "fc_norm", "norm_output"])
def test_variant_trains_saves_and_reloads(workspace, variant):
    recipe = load_recipe(write_recipe(workspace, variant, training={"max_steps": 3, "save_every": 100},
                                      draft={variant: True}))
    trainer = Trainer(recipe, progress=False)
    before = {k: v.clone() for k, v in trainer.draft.state_dict().items()}
    final = trainer.run()
    loaded = load_draft(final)
    assert getattr(loaded.config, variant)
    for name in EXTRA_WEIGHTS.get(variant, {}):
        assert not torch.equal(trainer.draft.state_dict()[name], before[name]), f"{name} did not train"
    ids, aux = _inputs()
    trainer.draft.eval()
    assert torch.equal(loaded.unroll(ids, aux, 3), trainer.draft.unroll(ids, aux, 3))


def test_warm_start_from_unsorted_ids_concatenates_in_ascending_order(workspace):
    """ModelOpt writes ids like [32, 1, 17]; engines capture in ascending order, so training must too."""
    torch.manual_seed(0)
    build_draft(tiny_gpt_oss_config(), draft_vocab_size=200).save_pretrained(workspace / "unsorted-draft")
    config_path = workspace / "unsorted-draft" / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("draftsmith")
    config["eagle_aux_hidden_state_layer_ids"] = [4, 1, 3]  # hidden states: outputs of layers 3, 0, 2
    config.pop("eagle_config")
    config_path.write_text(json.dumps(config))
    assert load_draft(workspace / "unsorted-draft").config.aux_layer_ids == (0, 2, 3)
    recipe = load_recipe(write_recipe(workspace, "unsorted", training={"max_steps": 1},
                                      draft={"init_from": str(workspace / "unsorted-draft"), "vocab_file": None}))
    trainer = Trainer(recipe, progress=False)
    assert trainer.train_supervisor.target.aux_layer_ids == (0, 2, 3)
    captured = {}

    def keep(k):
        def hook(module, args, out):
            captured[k] = out[0] if isinstance(out, tuple) else out
        return hook

    layers = trainer.train_supervisor.target.layers
    handles = [layers[k].register_forward_hook(keep(k)) for k in (3, 0, 2)]
    aux, _ = trainer.train_supervisor.target.capture_aux(torch.randint(3, VOCAB, (1, 5)))
    for handle in handles:
        handle.remove()
    torch.testing.assert_close(aux, torch.cat([captured[0], captured[2], captured[3]], -1), rtol=0, atol=0)
    exported = json.loads((trainer.run() / "config.json").read_text())
    assert exported["draftsmith"]["aux_hidden_state_indices"] == [1, 3, 4]
    assert exported["eagle_aux_hidden_state_layer_ids"] == [1, 3, 4]
