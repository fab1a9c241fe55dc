"""The trainer end to end on a tiny gpt-oss target: learning, exact resume, offline = online, recipes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from draftsmith import load_draft
from draftsmith.train.loop import Trainer, train
from draftsmith.train.prepare import prepare
from draftsmith.train.recipe import load_recipe
from train_workspace import make_workspace, read_metrics, write_recipe

SRC = str(Path(__file__).parents[1] / "src")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("workspace"))


def _cli(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "draftsmith", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_loss_falls_and_tau_rises(workspace):
    recipe = load_recipe(write_recipe(workspace, "learn", training={"max_steps": 30, "log_every": 5},
                                      data={"validation_fraction": 0.2}))
    final = train(recipe, progress=False)
    metrics = read_metrics(workspace / "learn")
    first, last = metrics[0], metrics[-1]
    assert last["loss"] < 0.8 * first["loss"]
    assert last["tau_sim"] > first["tau_sim"] + 0.3
    assert {"agree_0", "tokens_per_s", "lr", "grad_norm"} <= set(last)
    assert read_metrics(workspace / "learn", "validation")[-1]["tau_sim"] > 1.0
    draft = load_draft(final)  # the engine-format export at the end
    assert draft.config.aux_layer_ids == (0, 1, 2)


def test_refuses_non_empty_output_dir_without_resume(workspace):
    recipe = load_recipe(write_recipe(workspace, "occupied"))
    (workspace / "occupied").mkdir()
    (workspace / "occupied" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not empty; pass --resume"):
        Trainer(recipe)
    assert (workspace / "occupied" / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        Trainer(recipe, resume=True)


def test_sigkill_and_resume_is_bitwise_identical(workspace):
    steps = {"max_steps": 12, "save_every": 3}
    reference = _cli("train", str(write_recipe(workspace, "uninterrupted", training=steps)), "--no-progress")
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    killed_recipe = write_recipe(workspace, "killed", training=steps)
    victim = _cli("train", str(killed_recipe), "--no-progress")
    checkpoint = workspace / "killed" / "checkpoints" / "step-00000006" / "trainer_state.json"
    deadline = time.time() + 300
    while not checkpoint.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (workspace / "killed" / "draft").exists(), "the run finished before it could be killed"
    resumed = _cli("train", str(killed_recipe), "--resume", "--no-progress")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    want = load_file(workspace / "uninterrupted" / "draft" / "model.safetensors")
    got = load_file(workspace / "killed" / "draft" / "model.safetensors")
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name


def test_offline_features_give_the_online_first_step_loss(workspace):
    online = write_recipe(workspace, "online", training={"max_steps": 1})
    train(load_recipe(online), progress=False)
    prepare(load_recipe(online), workspace / "features", progress=False)
    offline = write_recipe(workspace, "offline", training={"max_steps": 1},
                           data={"features": str(workspace / "features")})
    recipe = load_recipe(offline)
    recipe.target.path = None  # train reads the features without the target
    train(recipe, progress=False)
    assert read_metrics(workspace / "offline")[0]["loss"] == pytest.approx(
        read_metrics(workspace / "online")[0]["loss"], rel=1e-5)


def test_offline_refuses_mismatched_manifest(workspace):
    if not (workspace / "features").exists():
        prepare(load_recipe(write_recipe(workspace, "prep", training={"max_steps": 1})), workspace / "features",
                progress=False)
    recipe = load_recipe(write_recipe(workspace, "mismatch", data={"features": str(workspace / "features"),
                                                                   "max_length": 64}))
    import draftsmith.train.loop as loop_module

    with pytest.MonkeyPatch.context() as patch:  # the manifest is checked before the features load
        patch.setattr(loop_module, "FeatureSet", lambda *a, **k: pytest.fail("loaded before checking"))
        with pytest.raises(ValueError, match="prepared with max_length=192, the recipe has 64"):
            Trainer(recipe)


def test_two_gloo_ranks_match_one_process(workspace):
    # 7 validation samples: the ranks hold 4 and 3, which must not stall evaluation
    held_out = {"validation_fraction": 0.15}
    one = write_recipe(workspace, "single", training={"micro_batch_size": 4, "max_steps": 4}, data=held_out)
    two = write_recipe(workspace, "ddp", training={"micro_batch_size": 2, "max_steps": 4}, data=held_out)
    single = _cli("train", str(one), "--no-progress")
    assert single.wait(timeout=300) == 0, single.stdout.read()
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--standalone", "-m", "draftsmith", "train", str(two), "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    a, b = read_metrics(workspace / "single"), read_metrics(workspace / "ddp")
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4)
        assert y["tau_sim"] == pytest.approx(x["tau_sim"], abs=1e-6)
    assert read_metrics(workspace / "ddp", "validation")[0]["tau_sim"] == pytest.approx(
        read_metrics(workspace / "single", "validation")[0]["tau_sim"], abs=1e-6)


def _other_tool_draft(workspace, directory):
    """A draft as another tool writes it: layers.0.* names, no embed_tokens, its own vocabulary."""
    import json

    from safetensors.torch import save_file

    from draftsmith import build_draft
    from tiny_models import tiny_gpt_oss_config

    torch.manual_seed(3)
    draft = build_draft(tiny_gpt_oss_config(), draft_vocab_size=200)
    d2t = torch.arange(200) * 2 - torch.arange(200)  # draft id i -> target id 2i
    t2d = torch.zeros(512, dtype=torch.bool)
    t2d[::2][:200] = True
    draft.set_vocab_mapping(d2t, t2d)
    draft.save_pretrained(directory)
    tensors = {k.replace("midlayer.", "layers.0."): v for k, v in load_file(directory / "model.safetensors").items()
               if k != "embed_tokens.weight"}
    save_file(tensors, directory / "model.safetensors")
    config = json.loads((directory / "config.json").read_text())
    config.pop("draftsmith")
    (directory / "config.json").write_text(json.dumps(config))
    return d2t


def test_warm_start_keeps_the_drafts_vocabulary(workspace):
    d2t = _other_tool_draft(workspace, workspace / "public-draft")
    recipe = load_recipe(write_recipe(workspace, "warm", training={"max_steps": 2},
                                      draft={"init_from": str(workspace / "public-draft"), "vocab_file": None}))
    with pytest.warns(UserWarning, match="no embed_tokens.weight"):
        final = train(recipe, progress=False)
    trained = load_draft(final)
    assert torch.equal(trained.d2t, d2t)
    target_embedding = load_file(workspace / "target" / "model.safetensors")["model.embed_tokens.weight"]
    assert torch.equal(trained.embed_tokens.weight, target_embedding)


def test_warm_start_refuses_a_different_data_vocabulary(workspace):
    _other_tool_draft(workspace, workspace / "public-draft-2")
    train(load_recipe(write_recipe(workspace, "makes-vocab", training={"max_steps": 1})), progress=False)
    recipe = load_recipe(write_recipe(workspace, "warm-mismatch",
                                      draft={"init_from": str(workspace / "public-draft-2")}))
    with pytest.raises(ValueError, match="maps 200 tokens differently from the warm-start draft"):
        with pytest.warns(UserWarning):
            Trainer(recipe)


def test_resume_refuses_a_changed_recipe(workspace, monkeypatch):
    import draftsmith.train.loop as loop_module

    path = write_recipe(workspace, "changed", training={"max_steps": 4, "save_every": 2})
    train(load_recipe(path), progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(loop_module, "load_tokenizer", lambda recipe: pytest.fail("loaded before checking"))
        with pytest.raises(ValueError, match="different recipe.training.learning_rate"):
            Trainer(load_recipe(path, ["training.learning_rate=1e-3"]), resume=True)
    (workspace / "changed" / "checkpoints" / ".step-00000009.tmp-dead").mkdir()
    cosmetic = ["training.log_every=2", "training.dataloader_workers=1", "data.num_workers=1"]
    trainer = Trainer(load_recipe(path, cosmetic), resume=True)  # cosmetic changes are fine
    assert trainer.progress.step == 4
    assert not list((workspace / "changed" / "checkpoints").glob(".step-*"))  # a killed save's leftovers go


def test_warm_start_without_aux_ids_adopts_the_targets(workspace):
    import json

    _other_tool_draft(workspace, workspace / "no-aux-draft")
    config_path = workspace / "no-aux-draft" / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("eagle_config")
    config.pop("eagle_aux_hidden_state_layer_ids")
    config_path.write_text(json.dumps(config))
    recipe = load_recipe(write_recipe(workspace, "no-aux", training={"max_steps": 1},
                                      draft={"init_from": str(workspace / "no-aux-draft"), "vocab_file": None}))
    with pytest.warns(UserWarning):
        final = train(recipe, progress=False)
    exported = json.loads((final / "config.json").read_text())
    assert exported["draftsmith"]["aux_hidden_state_indices"] == [1, 2, 3]  # outputs of layers 0, 1, 2
    assert exported["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [0, 1, 2]  # SGLang 0.5.23 adds 1
    assert exported["eagle_aux_hidden_state_layer_ids"] == [1, 2, 3]


def test_prepare_refuses_a_non_empty_output_before_loading_anything(workspace, monkeypatch):
    import draftsmith.train.prepare as prepare_module

    (workspace / "busy").mkdir()
    (workspace / "busy" / "keep.txt").write_text("x")
    monkeypatch.setattr(prepare_module, "load_tokenizer", lambda recipe: pytest.fail("loaded before checking"))
    with pytest.raises(FileExistsError, match="refusing to replace"):
        prepare(load_recipe(write_recipe(workspace, "busy-recipe")), workspace / "busy", progress=False)


def test_gradient_checkpointing_trains_the_same_weights(workspace):
    plain = train(load_recipe(write_recipe(workspace, "plain", training={"max_steps": 2})), progress=False)
    recomputed = train(load_recipe(write_recipe(workspace, "recomputed", training={
        "max_steps": 2, "gradient_checkpointing": True})), progress=False)
    a, b = load_file(plain / "model.safetensors"), load_file(recomputed / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_accumulation_equals_one_big_batch(workspace):
    """Micro-batch 4 x accumulation 2 takes the same steps as 8 x 1: one normalization for the group."""
    steps = {"max_steps": 4, "warmup_steps": 0}
    small = train(load_recipe(write_recipe(workspace, "acc-4x2", training={
        **steps, "micro_batch_size": 4, "gradient_accumulation": 2})), progress=False)
    big = train(load_recipe(write_recipe(workspace, "acc-8x1", training={
        **steps, "micro_batch_size": 8, "gradient_accumulation": 1})), progress=False)
    a, b = load_file(small / "model.safetensors"), load_file(big / "model.safetensors")
    # Adam's first steps move each weight by about +-lr (3e-3), so a wrong normalization shows up at that
    # scale (per-micro-batch means were 6e-3 apart); fp32 summation order stays near 1e-5.
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=2e-5, msg=name)
    first = read_metrics(workspace / "acc-4x2")[0]
    assert first["loss"] == pytest.approx(read_metrics(workspace / "acc-8x1")[0]["loss"], rel=1e-5)


def test_no_weight_decay_on_norms_and_other_1d_parameters():
    from draftsmith import build_draft
    from draftsmith.train.loop import adamw
    from tiny_models import tiny_gpt_oss_config

    draft = build_draft(tiny_gpt_oss_config(), draft_vocab_size=100)
    before = {n: p.detach().clone() for n, p in draft.named_parameters()}
    optimizer = adamw(draft, learning_rate=0.1, weight_decay=0.5)
    for p in draft.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    optimizer.step()  # zero gradients: only weight decay moves a parameter
    for name, p in draft.named_parameters():
        if not p.requires_grad:
            continue
        expected = before[name] * (1 - 0.1 * 0.5) if p.dim() >= 2 else before[name]
        assert torch.allclose(p, expected), name
    assert any(p.dim() == 1 for p in draft.parameters())  # the norms exist and were left alone


def test_an_oversized_draft_vocab_size_is_capped(workspace):
    recipe = load_recipe(write_recipe(workspace, "big-vocab", training={"max_steps": 1}, draft={
        "draft_vocab_size": 100_000, "vocab_file": str(workspace / "big-vocab.safetensors")}))
    final = train(recipe, progress=False)
    draft = load_draft(final)
    assert draft.config.draft_vocab_size == draft.config.vocab_size == 512
    assert bool(draft.t2d.all())


def test_an_explicit_vocab_file_is_never_overwritten(workspace):
    path = workspace / "mine.safetensors"
    train(load_recipe(write_recipe(workspace, "mine-200", training={"max_steps": 1},
                                   draft={"vocab_file": str(path)})), progress=False)
    before = path.read_bytes()
    recipe = load_recipe(write_recipe(workspace, "mine-100", training={"max_steps": 1},
                                      draft={"vocab_file": str(path), "draft_vocab_size": 100}))
    with pytest.raises(ValueError, match="draft vocab size 200 in the file, 100 now; it is never overwritten"):
        Trainer(recipe)
    assert path.read_bytes() == before


def test_token_budget_batches_and_loader_workers(workspace):
    """A max_tokens run trains; reading through two DataLoader workers gives the same weights as reading
    in the loop's process; both runs map the one sample store rendered by the first."""
    budget = {"max_steps": 2, "micro_batch_size": None, "max_tokens": 384}
    inline = train(load_recipe(write_recipe(workspace, "budget-0", training=budget)), progress=False)
    workers = train(load_recipe(write_recipe(workspace, "budget-2", training={**budget, "dataloader_workers": 2})),
                    progress=False)
    a, b = load_file(inline / "model.safetensors"), load_file(workers / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
    first = read_metrics(workspace / "budget-0")[0]
    assert first["tokens_per_s"] > 0
    stores = list((Path(os.environ["XDG_CACHE_HOME"]) / "draftsmith" / "data").iterdir())
    assert len(stores) == 1 and (stores[0] / "meta.json").is_file()


def test_rank_0_releases_the_waiting_ranks_when_the_data_fails(workspace, tmp_path):
    """Rank 0 renders first while the others wait at a barrier; bad data must not leave them waiting."""
    from draftsmith.data import BadRecordError
    from draftsmith.train.distributed import DistContext
    from draftsmith.train.setup import build_samples, load_tokenizer

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "not a list"}\n' * 3)
    recipe = load_recipe(write_recipe(workspace, "bad-data", data={"train": [str(bad)]}))
    barriers = []

    class Recording(DistContext):
        def barrier(self) -> None:
            barriers.append(self.rank)

    for rank in (0, 1):
        with pytest.raises(BadRecordError, match="3 of 3 records"):
            build_samples(recipe, load_tokenizer(recipe), False, Recording(rank=rank, world_size=2))
        assert barriers[-1] == rank
    assert barriers == [0, 1]
