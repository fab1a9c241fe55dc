"""Recipes are validated before any model loads; every mistake names the file and the key."""

import pytest
import yaml

from draftsmith.cli import main
from draftsmith.train.recipe import RecipeError, check_inputs, load_recipe

GOOD = {"target": {"path": "some/target"}, "data": {"train": ["train.jsonl"]},
        "training": {"output_dir": "run", "learning_rate": 1e-4}}


def _write(tmp_path, recipe, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe) if not isinstance(recipe, str) else recipe)
    return path


def test_good_recipe_and_defaults(tmp_path):
    recipe = load_recipe(_write(tmp_path, GOOD))
    assert recipe.training.ttt_steps == 7 and recipe.training.step_decay == 0.8
    assert recipe.data.train == [str(tmp_path / "train.jsonl")] and recipe.draft.draft_vocab_size == 32000
    assert recipe.target.path == "some/target"  # not a local path: a hub id, kept as written


def test_paths_resolve_relative_to_the_recipe_file(tmp_path, monkeypatch):
    (tmp_path / "models" / "t").mkdir(parents=True)
    (tmp_path / "recipes").mkdir()
    path = _write(tmp_path / "recipes", {"target": {"path": "../models/t"}, "data": {"train": ["../d.jsonl"]},
                                         "training": {"output_dir": "out"}})
    monkeypatch.chdir(tmp_path / "models")  # anywhere else
    recipe = load_recipe(path, ["draft.vocab_file=v.safetensors"])
    assert recipe.target.path == str(tmp_path / "models" / "t")
    assert recipe.data.train == [str(tmp_path / "d.jsonl")]
    assert recipe.training.output_dir == str(tmp_path / "recipes" / "out")
    assert recipe.draft.vocab_file == "v.safetensors"  # --set values stay relative to the working directory


def test_missing_inputs_are_named_before_anything_loads(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "train.jsonl").write_text("")
    recipe = load_recipe(_write(tmp_path, {**GOOD, "target": {"path": "demo/target"}}))
    with pytest.raises(RecipeError, match=r"target.path: no such target directory .*demo/target"):
        check_inputs(recipe)
    recipe = load_recipe(_write(tmp_path, {**GOOD, "data": {"train": ["nowhere.jsonl"]}}))
    with pytest.raises(RecipeError, match=r"data.train: no such file .*nowhere.jsonl"):
        check_inputs(recipe)
    check_inputs(load_recipe(_write(tmp_path, GOOD)))  # a hub id is left to the hub


def test_cuda_on_a_cpu_only_torch_is_one_line(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    (tmp_path / "train.jsonl").write_text("")
    path = _write(tmp_path, {**GOOD, "target": {"path": "some/target", "device": "cuda"}})
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "target.device is 'cuda', but this torch build has no CUDA" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_set_overrides_are_typed(tmp_path):
    recipe = load_recipe(_write(tmp_path, GOOD), ["training.learning_rate=3e-4", "data.pack=true",
                                                  "draft.aux_layer_ids=[1, 11, 20]"])
    assert recipe.training.learning_rate == 3e-4 and recipe.data.pack is True
    assert recipe.draft.aux_layer_ids == [1, 11, 20]


@pytest.mark.parametrize("change, message", [
    ({"training": {"lr": 1e-4}}, r"recipe.yaml: unknown key\(s\) training.lr; 'training' takes"),
    ({"trainer": {}}, r"unknown section\(s\) \['trainer'\]"),
    ({"training": {"micro_batch_size": "four"}}, "training.micro_batch_size: expected an integer, got 'four'"),
    ({"training": {"micro_batch_size": 0}}, "training.micro_batch_size: must be positive"),
    ({"training": {"bf16": "yes"}}, "training.bf16: expected true or false"),
    ({"data": {"train": ["t.jsonl"], "overlong": "cut"}}, r"data.overlong: 'cut' is not one of \['truncate', 'drop'\]"),
    ({"data": {"train": ["t.jsonl"], "validation_fraction": 1.5}}, r"data.validation_fraction: must be in \[0, 1\)"),
    ({"data": {"train": []}}, "data.train is empty"),
    ({"target": {"path": None}}, "target.path is required"),
    ({"training": {"learning_rate": -1.0}}, "learning_rate must be positive"),
    ({"draft": {"aux_layer_ids": [1, 2]}}, "draft.aux_layer_ids must name exactly three target layers"),
    ({"training": {"step_decay": 1.5}}, r"step_decay must be in \(0, 1\]"),
    ({"target": {"path": "t", "dtype": "bf16"}}, r"target.dtype: 'bf16' is not one of"),
    ({"target": {"path": "t", "device": "gpu0"}}, r"target.device: 'gpu0' is not a device"),
    ({"training": {"max_tokens": 8192, "micro_batch_size": 4}},
     "training.max_tokens and training.micro_batch_size are mutually exclusive"),
    ({"training": {"max_tokens": 1024}}, r"training.max_tokens \(1024\) must be at least data.max_length \(4096\)"),
    ({"training": {"max_tokens": 0}}, "training.max_tokens: must be positive"),
    ({"data": {"train": ["t.jsonl"], "num_workers": 0}}, "data.num_workers: must be positive"),
    ({"training": {"dataloader_workers": -1}}, "training.dataloader_workers must be >= 0"),
])
def test_bad_recipes_name_the_key(tmp_path, change, message):
    recipe = {k: dict(v) for k, v in GOOD.items()}
    for section, values in change.items():
        recipe.setdefault(section, {}).update(values)
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, recipe))


def test_a_micro_batch_is_one_sample_unless_a_token_budget_is_set(tmp_path):
    assert load_recipe(_write(tmp_path, GOOD)).training.micro_batch_size == 1
    budget = load_recipe(_write(tmp_path, GOOD), ["training.max_tokens=8192"]).training
    assert budget.max_tokens == 8192 and budget.micro_batch_size is None
    recipe = load_recipe(_write(tmp_path, {**GOOD, "data": {"train": ["t.jsonl"], "cache_dir": "cache"}}))
    assert recipe.data.cache_dir == str(tmp_path / "cache")  # relative to the recipe, as every path


def test_bad_override_syntax(tmp_path):
    with pytest.raises(RecipeError, match="expected section.key=value"):
        load_recipe(_write(tmp_path, GOOD), ["learning_rate=3"])
    with pytest.raises(RecipeError, match="unknown section 'optim'"):
        load_recipe(_write(tmp_path, GOOD), ["optim.lr=3"])


def test_unreadable_recipes(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "training: [unclosed"))
    with pytest.raises(RecipeError, match="a recipe is a mapping of sections"):
        load_recipe(_write(tmp_path, "- just\n- a list\n"))


def test_cli_reports_recipe_errors_in_one_line_before_loading_anything(tmp_path, capsys):
    # target.path points nowhere: if the recipe were not validated first, loading would fail differently
    path = _write(tmp_path, {**GOOD, "training": {"epochs": "many"}})
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "training.epochs: expected an integer" in err and "Traceback" not in err


def test_shipped_example_recipes_are_valid():
    from pathlib import Path

    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))
    assert len(examples) >= 3
    for path in examples:
        recipe = load_recipe(path)
        assert recipe.training.ttt_steps == 7, path
