"""`draftsmith eval` and the end-of-training evaluation: reports, contexts, refusals, model card."""

import json

import pytest
import torch

from draftsmith import build_draft, load_draft
from draftsmith.cli import main
from draftsmith.evaluate import (DraftUnderTest, EvalSettings, PromptSet, evaluate, evaluate_prompts, plot_series,
                                 trained_steps)
from draftsmith.data.conversation import parse_conversation
from draftsmith.evaluate.prompts import Prompt, render_prompt, with_context
from draftsmith.evaluate.report import plot_available
from draftsmith.target.capture import TargetMismatchError, TargetModel
from draftsmith.train.loop import train
from draftsmith.train.recipe import load_recipe
from tiny_models import save_tiny_target, tiny_gpt_oss_config
from tiny_tokenizers import load_tiny_tokenizer, save_tiny_tokenizer
from train_workspace import make_workspace, write_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = ["What is 3 plus 4?", "Name the capital of France.", "Write a short poem about the sea.",
             "Please list three fruits."]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    save_tiny_target("gpt_oss", root / "target")
    save_tiny_tokenizer("harmony", root / "target")
    target = TargetModel.from_pretrained(root / "target")
    for name, seed in (("draft-a", 0), ("draft-b", 1)):
        torch.manual_seed(seed)
        draft = build_draft(target.config, draft_vocab_size=200)
        with torch.no_grad():
            draft.embed_tokens.weight.copy_(target.model.get_input_embeddings().weight)
        draft.save_pretrained(root / name)
    (root / "draft-b" / "README.md").write_text("---\nttt_steps: 2\n---\n# a card\n")
    with open(root / "prompts.jsonl", "w") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "   "}]}) + "\n")  # empty prompt
        for q in QUESTIONS:
            f.write(json.dumps({"messages": [{"role": "user", "content": q},
                                             {"role": "assistant", "content": "Sure, here it is."}]}) + "\n")
        f.write("{not json\n")
    return root


def _recomputed_depths(prompts, steps):
    reached, accepted = [0] * steps, [0] * steps
    for p in prompts:
        for a in p["accepted"]:
            for j in range(steps):
                reached[j] += j <= a
                accepted[j] += j < a
    return reached, accepted


def test_cli_reports_drafts_side_by_side(space, tmp_path, capsys):
    out = tmp_path / "report.json"
    plot = tmp_path / "report.png"
    code = main(["eval", "--target", str(space / "target"), "--draft", str(space / "draft-a"),
                 "--draft", str(space / "draft-b"), "--data", str(space / "prompts.jsonl"), "--contexts", "0,150",
                 "--max-new-tokens", "6", "--max-prompts", "3", "--json", str(out), "--plot", str(plot),
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    a, b = report["drafts"]
    assert (a["steps"], b["steps"]) == (7, 2)  # draft-b's card records 2 TTT steps; draft-a falls back to 7
    assert [p["start"] for p in a["prompts"]] == [p["start"] for p in b["prompts"]]
    assert [p["context"] for p in a["prompts"]] == [0, 150] * 3
    assert report["prompts"]["skipped"] == {"empty": 1, "unreadable": 1}
    for d in (a, b):
        assert d["overall"]["greedy_mismatches"] == 0
        rounds = sum(len(p["accepted"]) for p in d["prompts"])
        committed = sum(sum(p["accepted"]) + len(p["accepted"]) for p in d["prompts"])
        assert d["overall"]["tau"] == pytest.approx(committed / rounds)
        reached, accepted = _recomputed_depths(d["prompts"], d["steps"])
        assert [x["reached"] for x in d["by_depth"]] == reached
        assert [x["accepted"] for x in d["by_depth"]] == accepted
        assert [c["context"] for c in d["by_context"]] == [0, 150]
    starts = {c: [p["start"] for p in a["prompts"] if p["context"] == c] for c in (0, 150)}
    assert all(s <= 150 for s in starts[150]) and min(starts[150]) > max(starts[0])  # context was prefixed
    series = plot_series(report)
    assert series["tau_by_context"][a["name"]] == ([c["mean_start"] for c in a["by_context"]],
                                                   [c["tau"] for c in a["by_context"]])
    assert series["acceptance_by_depth"][b["name"]][1] == [x["rate"] for x in b["by_depth"]]
    if plot_available():
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "draft-a" in printed and "draft-b" in printed
    assert main(["eval", "--target", str(space / "target"), "--draft", str(space / "draft-a"), "--data",
                 str(space / "prompts.jsonl"), "--json", str(out), "--no-progress"]) == 2  # refuses to overwrite


def test_refuses_a_draft_for_another_target(space, tmp_path):
    other = build_draft(tiny_gpt_oss_config(hidden_size=96, vocab_size=512), draft_vocab_size=200)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(TargetMismatchError, match="target_hidden_size=96.*hidden_size=64"):
        evaluate(space / "target", [tmp_path / "other"], space / "prompts.jsonl", EvalSettings(progress=False))


def test_rope_difference_is_a_warning_not_a_refusal(space):
    target = TargetModel.from_pretrained(space / "target")
    draft = build_draft(tiny_gpt_oss_config(rope_parameters={"rope_type": "default", "rope_theta": 150000.0}),
                        draft_vocab_size=200)
    prompts = PromptSet([Prompt(list(range(3, 20)), "<test>")])
    report = evaluate_prompts(target.model, [DraftUnderTest("plain-rope", draft)], prompts,
                              EvalSettings(steps=2, max_new_tokens=4, progress=False))
    assert len(report["warnings"]) == 1 and "RoPE" in report["warnings"][0]
    assert report["drafts"][0]["overall"]["greedy_mismatches"] == 0


def test_over_long_prompts_are_skipped_and_counted(space):
    report = evaluate(space / "target", [space / "draft-a"], space / "prompts.jsonl",
                      EvalSettings(steps=2, max_new_tokens=2, max_context=60, progress=False))
    skipped = report["prompts"]["skipped"]
    assert skipped["too_long"] >= 1 and skipped["too_long"] + report["prompts"]["evaluated"] == len(QUESTIONS)


def test_training_ends_with_a_real_evaluation_and_a_model_card(tmp_path):
    root = make_workspace(tmp_path, records=24)
    recipe = write_recipe(root, "run", data={"validation_fraction": 0.2},
                          training={"max_steps": 2, "save_every": 2}, evaluation={"prompts": 2})
    final = train(load_recipe(recipe), progress=False)
    report = json.loads((root / "run" / "eval.json").read_text())
    overall = report["drafts"][0]["overall"]
    assert report["prompts"]["evaluated"] == 2 and overall["greedy_mismatches"] == 0
    card = (final / "README.md").read_text()
    assert trained_steps(final) == 3
    assert f"| {overall['tau']:.2f} |" in card
    assert "--speculative-algorithm EAGLE3" in card and "--speculative-num-steps 3" in card
    assert '"num_speculative_tokens": 3' in card and str(root / "target") in card
    load_draft(final)  # the card does not disturb the checkpoint


@pytest.mark.parametrize("position", [0, 40, 150, 400, 5000])
def test_context_holds_the_most_earlier_conversations_that_fit(tmp_path, position):
    """The prompt at a grid position carries as many earlier conversations as fit, checked by counting up one by one."""
    tokenizer = load_tiny_tokenizer("harmony", tmp_path / "tok")
    conversations = [parse_conversation({"messages": [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": f"question {i} " + "word " * (i % 4)},
                                                      {"role": "assistant", "content": f"answer {i}"}]}, f"x:{i}")
                     for i in range(5)]
    got = with_context(conversations, 2, tokenizer, position)
    others = conversations[3:] + conversations[:2]
    system, own = list(conversations[2].messages[:1]), list(conversations[2].messages[1:2])

    def naive(count):
        history = [m for k in range(count) for m in others[k % len(others)].messages[1:]]
        return render_prompt(system + history + own, tokenizer)

    count = 0
    while len(naive(count + 1)) <= position:
        count += 1
    assert got == naive(count)
    assert len(got) <= position or count == 0
