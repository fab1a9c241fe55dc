"""A target spread by a device map (``target.device_map``) for ``draftsmith prepare``.

On a CPU-only machine accelerate places every layer on the CPU, so these tests check the
plumbing (the map reaches transformers and the features are unchanged) and the refusals;
the cross-GPU test runs only where two GPUs are visible.
"""

import importlib.util

import pytest
import torch
from safetensors.torch import load_file

from draftsmith.train.loop import Trainer
from draftsmith.train.prepare import prepare
from draftsmith.train.recipe import RecipeError, check_inputs, load_recipe
from train_workspace import make_workspace, write_recipe

SHARDED = {"device": None, "device_map": "auto"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("sharded"), records=12)


def _features(directory):
    tensors = {}
    for shard in sorted(directory.glob("*.safetensors")):
        tensors.update({f"{shard.name}/{k}": v for k, v in load_file(shard).items()})
    return tensors


def _same_features(a, b):
    want, got = _features(a), _features(b)
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name].cpu(), want[name].cpu(), rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
def test_prepare_with_a_device_map_writes_the_same_features(workspace, monkeypatch):
    import transformers

    seen = []
    original = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("device_map"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    whole = prepare(load_recipe(write_recipe(workspace, "whole")), workspace / "features-whole", progress=False)
    mapped = prepare(load_recipe(write_recipe(workspace, "mapped", target=SHARDED)), workspace / "features-mapped",
                     progress=False)
    assert seen == [None, "auto"]
    _same_features(whole, mapped)


def test_device_map_and_device_exclude_each_other(workspace):
    with pytest.raises(RecipeError, match="target.device_map and target.device exclude each other"):
        load_recipe(write_recipe(workspace, "both", target={"device_map": "auto"}))
    with pytest.raises(RecipeError, match=r"target.device_map: 'everywhere' is not one of \['auto'"):
        load_recipe(write_recipe(workspace, "unknown", target={"device": None, "device_map": "everywhere"}))


def test_a_device_map_without_accelerate_names_the_extra(workspace, monkeypatch):
    import draftsmith.train.recipe as recipe_module

    recipe = load_recipe(write_recipe(workspace, "no-accelerate", target=SHARDED))
    real = importlib.util.find_spec
    monkeypatch.setattr(recipe_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(RecipeError, match=r"needs accelerate.*draftsmith\[sharded\]"):
        check_inputs(recipe)


def test_online_training_refuses_a_device_map_before_loading(workspace, monkeypatch):
    import draftsmith.train.loop as loop_module

    monkeypatch.setattr(loop_module, "init_distributed", lambda device: pytest.fail("started before checking"))
    recipe = load_recipe(write_recipe(workspace, "online-mapped", target=SHARDED))
    with pytest.raises(RecipeError, match="target.device_map is for `draftsmith prepare`"):
        Trainer(recipe, progress=False)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2 or importlib.util.find_spec("accelerate") is None,
                    reason="needs two CUDA GPUs and accelerate")
def test_prepare_across_two_gpus_matches_one_gpu(workspace):
    one = prepare(load_recipe(write_recipe(workspace, "one-gpu", target={"device": "cuda:0"})),
                  workspace / "features-one-gpu", progress=False)
    two = prepare(load_recipe(write_recipe(workspace, "two-gpus", target={"device": None,
                                                                            "device_map": "balanced"})),
                  workspace / "features-two-gpus", progress=False)
    _same_features(one, two)
