"""`draftsmith demo`: its recipe is the shipped example, and `--quick` runs the whole path end to end."""

import json
from pathlib import Path

from draftsmith import load_draft
from draftsmith.inspect import inspect_checkpoint
from draftsmith.cli import main
from draftsmith.demo.run import FULL, assets, demo_recipe
from draftsmith.train.recipe import load_recipe

EXAMPLE = Path(__file__).parents[1] / "examples" / "tiny-gpt-oss.yaml"


def test_example_recipe_is_the_demo_recipe(tmp_path):
    """`draftsmith train examples/tiny-gpt-oss.yaml` trains what `draftsmith demo` trains."""
    example, demo = load_recipe(EXAMPLE).to_dict(), demo_recipe(tmp_path, FULL).to_dict()
    tail = lambda path: Path(path).parts[-2:]  # noqa: E731
    assert tail(example["target"]["path"]) == tail(demo["target"]["path"])
    assert [tail(p) for p in example["data"]["train"]] == [tail(p) for p in demo["data"]["train"]]
    assert [Path(p).name for p in example["data"]["validation"]] == [Path(p).name for p in demo["data"]["validation"]]
    for recipe in (example, demo):
        recipe["target"]["path"] = recipe["data"]["train"] = recipe["data"]["validation"] = None
        recipe["draft"]["vocab_file"] = recipe["training"]["output_dir"] = None
    assert example == demo


def test_quick_demo_end_to_end_and_a_second_run_refuses(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    draft = out / "run" / "draft"
    assert str(draft) in printed and "speculative-draft-model-path" in printed
    assert load_draft(draft).config.target_model_type == "gpt_oss"
    assert inspect_checkpoint(draft, target=assets() / "target").verdicts() == {"sglang": "ok", "vllm": "ok"}
    assert json.loads((out / "draft-speculators" / "config.json").read_text())["speculators_config"]
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
