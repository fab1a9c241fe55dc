"""The laptop demo: `draftsmith demo` builds a target a shipped recipe trains against."""

from pathlib import Path

import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from draftsmith import load_draft
from draftsmith.cli import main
from draftsmith.demo import make_demo
from draftsmith.checkpoint.inspect import inspect_checkpoint

EXAMPLE = Path(__file__).parents[1] / "examples" / "tiny-gpt-oss.yaml"


def test_demo_target_trains_with_the_shipped_recipe(tmp_path, capsys):
    make_demo(tmp_path / "demo", records=24, target_steps=2, progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "demo" / "target")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "demo" / "target")
    assert model.config.model_type == "gpt_oss" and model.config.rope_parameters["rope_type"] == "yarn"
    assert model.config.vocab_size == len(tokenizer) and "<|channel|>" in tokenizer.get_vocab()
    recipe = yaml.safe_load(EXAMPLE.read_text())
    recipe["target"]["path"] = str(tmp_path / "demo" / "target")
    recipe["data"]["train"] = [str(tmp_path / "demo" / "train.jsonl")]
    recipe["training"].update(output_dir=str(tmp_path / "run"), max_steps=2, micro_batch_size=4)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(tmp_path / "tiny.yaml"), "--no-progress", "--set",
                 f"draft.vocab_file={tmp_path / 'vocab.safetensors'}"]) == 0
    final = tmp_path / "run" / "draft"
    assert load_draft(final).config.target_model_type == "gpt_oss"
    report = inspect_checkpoint(final, target=tmp_path / "demo" / "target")
    assert report.verdicts() == {"sglang": "ok", "vllm": "ok"}, [str(f) for f in report.findings]
