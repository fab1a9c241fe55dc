"""What a new user sees at the command line: one-line errors, Ctrl-C, the end-of-run summary, fast help."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import draftsmith
from draftsmith import build_draft, load_draft
from draftsmith.cli import main
from draftsmith.train import loop
from tiny_models import tiny_gpt_oss_config, tiny_llama_config
from train_workspace import make_workspace, read_metrics, write_recipe

SRC = str(Path(__file__).parents[1] / "src")


def _python(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("cli"), records=24)


def test_version():
    done = _python("-m", "draftsmith", "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"draftsmith {draftsmith.__version__}"


def test_help_loads_neither_torch_nor_transformers():
    """Every command imports the library inside its run(), so help answers at once."""
    probe = ("import sys\nfrom draftsmith.cli import build_parser\nparser = build_parser()\n"
             "for argv in (['--help'], *[[name, '--help'] for name in parser._subparsers._group_actions[0].choices]):\n"
             "    try:\n        parser.parse_args(argv)\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    done = _python("-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_missing_local_target_is_named_in_one_line(workspace, capsys):
    recipe = write_recipe(workspace, "no-target", target={"path": str(workspace / "nowhere" / "target")})
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"target.path: no such target directory {workspace / 'nowhere' / 'target'}")
    assert len(err.splitlines()) == 1


def test_summary_and_metrics_lines_without_progress_bars(workspace, capsys, caplog):
    caplog.set_level("INFO")
    recipe = write_recipe(workspace, "summary", training={"max_steps": 2, "log_every": 1},
                          data={"validation_fraction": 0.2})
    assert main(["train", str(recipe), "--no-progress"]) == 0
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("step ")] == [
        "step 1/2", "step 2/2"]
    out = capsys.readouterr().out
    tau = read_metrics(workspace / "summary", "validation")[-1]["tau_sim"]
    draft = workspace / "summary" / "draft"
    assert f"final validation: tau_sim {tau:.2f}" in out
    real = json.loads((workspace / "summary" / "eval.json").read_text())["drafts"][0]["overall"]["tau"]
    assert f"real speculative decoding: tau {real:.2f} on held-out prompts" in out
    assert f"draft:       {draft}" in out and f"{workspace / 'summary' / 'metrics.jsonl'}" in out
    assert f"draftsmith inspect {draft} --target {workspace / 'target'}" in out
    assert f"--speculative-draft-model-path {draft}" in out and f"vllm serve {workspace / 'target'}" in out


def test_ctrl_c_is_one_line_and_an_early_stop_is_no_dead_end(workspace, capsys, monkeypatch):
    recipe = write_recipe(workspace, "stopped", training={"max_steps": 4, "save_every": 3})
    real_step = loop.Trainer._optimizer_step

    def step_then_stop(self, group):
        if self.progress.step == 2:
            raise KeyboardInterrupt
        return real_step(self, group)

    monkeypatch.setattr(loop.Trainer, "_optimizer_step", step_then_stop)
    assert main(["train", str(recipe), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step 2; continue with `draftsmith train {recipe} --resume` (from step 0: no " \
           f"checkpoint yet)" in err
    assert "Traceback" not in err and sum("interrupted" in line for line in err.splitlines()) == 1
    assert main(["train", str(recipe), "--no-progress"]) == 2  # a rerun points at --resume ...
    assert "pass --resume" in capsys.readouterr().err
    monkeypatch.setattr(loop.Trainer, "_optimizer_step", real_step)
    assert main(["train", str(recipe), "--no-progress", "--resume"]) == 0  # ... which starts it again
    assert [m["step"] for m in read_metrics(workspace / "stopped")] == [1, 2, 3, 4]


def test_sigint_in_a_real_process_prints_no_traceback(workspace):
    recipe = write_recipe(workspace, "sigint", training={"max_steps": 400, "log_every": 1})
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    run = subprocess.Popen([sys.executable, "-m", "draftsmith", "train", str(recipe), "--no-progress"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workspace / "sigint" / "metrics.jsonl"
    deadline = time.time() + 240
    while run.poll() is None and time.time() < deadline and not (metrics.exists() and metrics.read_text()):
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted at step ")


def test_mid_run_checkpoints_inspect_and_export(workspace, capsys):
    recipe = write_recipe(workspace, "midrun", training={"max_steps": 2, "save_every": 1, "keep_last": 5})
    assert main(["train", str(recipe), "--no-progress"]) == 0
    checkpoint = workspace / "midrun" / "checkpoints" / "step-00000001"
    assert main(["inspect", str(checkpoint), "--target", str(workspace / "target")]) == 0
    out = workspace / "midrun-speculators"
    assert main(["export", str(checkpoint), str(out), "--verifier", str(workspace / "target")]) == 0
    assert "vLLM uses the verifier's" in capsys.readouterr().out
    with safe_open(out / "model.safetensors", framework="pt") as handle:
        names = set(handle.keys())
    assert "embed_tokens.weight" not in names and "layers.0.self_attn.q_proj.weight" in names
    with pytest.warns(UserWarning, match="no embed_tokens"):
        exported = load_draft(out)
    with pytest.warns(UserWarning, match="no embed_tokens"):
        saved = load_draft(checkpoint)
    assert torch.equal(exported.fc.weight, saved.fc.weight)


def test_export_checks_the_draft_against_a_local_verifier(tmp_path, capsys):
    build_draft(tiny_gpt_oss_config(), draft_vocab_size=100).save_pretrained(tmp_path / "draft")
    tiny_llama_config(hidden_size=128).save_pretrained(tmp_path / "llama")  # fc takes 3 x 64
    assert main(["export", str(tmp_path / "draft"), str(tmp_path / "out"), "--verifier", str(tmp_path / "llama")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"does not fit the verifier {tmp_path / 'llama'}" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_demo_refuses_an_existing_directory_before_any_work(tmp_path, capsys, monkeypatch):
    import draftsmith.demo.run

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mine.txt").write_text("keep")
    monkeypatch.setattr(draftsmith.demo.run, "train", lambda *a, **k: pytest.fail("worked before checking"))
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    assert (tmp_path / "demo" / "mine.txt").read_text() == "keep"


def test_demo_same_seed_same_target_weights(tmp_path):
    from draftsmith.demo import make_demo

    for name in ("a", "b"):
        make_demo(tmp_path / name, records=24, target_steps=3, progress=False)
    assert (tmp_path / "a" / "target" / "model.safetensors").read_bytes() == \
        (tmp_path / "b" / "target" / "model.safetensors").read_bytes()
    assert (tmp_path / "a" / "train.jsonl").read_text() == (tmp_path / "b" / "train.jsonl").read_text()


def test_the_data_report_prints_once(workspace, caplog):
    data = workspace / "with-bad-record.jsonl"
    data.write_text((workspace / "train.jsonl").read_text() + "{not json\n")
    recipe = write_recipe(workspace, "report", training={"max_steps": 1}, data={
        "train": [str(data)], "max_bad_fraction": 0.5}, draft={"vocab_file": str(workspace / "report.safetensors")})
    caplog.set_level("INFO")
    assert main(["train", str(recipe), "--no-progress"]) == 0
    assert sum("data report" in r.getMessage() for r in caplog.records) == 1


def test_recipe_paths_resolve_from_any_working_directory(workspace, tmp_path, monkeypatch):
    (workspace / "recipes").mkdir(exist_ok=True)
    recipe = workspace / "recipes" / "relative.yaml"
    recipe.write_text(json.dumps({
        "target": {"path": "../target", "dtype": "float32", "device": "cpu"},
        "data": {"train": ["../train.jsonl"], "max_length": 192},
        "draft": {"draft_vocab_size": 200, "vocab_file": "../relative-vocab.safetensors"},
        "training": {"output_dir": "../relative-run", "ttt_steps": 2, "micro_batch_size": 4, "max_steps": 1}}))
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(recipe), "--no-progress"]) == 0
    assert (workspace / "relative-run" / "draft" / "model.safetensors").is_file()
