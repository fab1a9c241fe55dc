"""The draft vocabulary: frequency order, special tokens, the cap, caching and invalidation.

Expected vocabularies are computed independently of the data package: token counts come from
tokenizing the known assistant strings on their own (``<answer><|eot_id|>`` per turn under
the Llama-3 template) and counting with ``collections.Counter``.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import torch
from tiny_tokenizers import load_tiny_tokenizer

from draftsmith.cli import main
from draftsmith.model.config import DraftConfig
from draftsmith.data import BadRecordError, DataConfig, load_or_build_vocab, load_vocab_mapping
from draftsmith.data.vocab import build_vocab_mapping, select_draft_tokens
from draftsmith.model.draft import Eagle3Draft

ANSWERS = [
    "The capital of France is Paris.",
    "Paris is sunny and warm.",
    "Paris, Paris, Paris!",
    "Goodbye and have a nice day.",
    "The answer is 42.",
]


def records(answers):
    return [{"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": a}]}
            for i, a in enumerate(answers)]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok") / "llama3"
    load_tiny_tokenizer("llama3", directory)
    return directory


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def write(path, answers):
    path.write_text("".join(json.dumps(r) + "\n" for r in records(answers)))
    return path


def expected_counts(tokenizer, answers) -> Counter:
    counts = Counter()
    for answer in answers:
        counts.update(tokenizer(answer + "<|eot_id|>", add_special_tokens=False)["input_ids"])
    return counts


def always_in(tokenizer) -> set[int]:
    """Named specials, and the template's header tokens that appear in every render."""
    used = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}
    return set(tokenizer.all_special_ids) | set(tokenizer.convert_tokens_to_ids(sorted(used)))


def test_most_frequent_supervised_tokens_and_all_specials(tmp_path, tokenizer):
    path = write(tmp_path / "d.jsonl", ANSWERS)
    size = 24
    mapping, reused = load_or_build_vocab(tmp_path / "v.safetensors", path, tokenizer, size)
    assert not reused

    counts = expected_counts(tokenizer, ANSWERS)
    special = always_in(tokenizer)
    assert "<|python_tag|>" in tokenizer.all_special_tokens  # never used in the data, still kept
    ranked = sorted((t for t in counts if t not in special), key=lambda t: (-counts[t], t))
    expected = sorted(special | set(ranked[: size - len(special)]))

    chosen = mapping.target_ids().tolist()
    assert chosen == expected
    assert mapping.draft_vocab_size == size and mapping.target_vocab_size == len(tokenizer)
    # frequency order: nothing left out is more frequent than anything chosen on merit
    kept = [counts[t] for t in chosen if t not in special]
    left = [counts[t] for t in counts if t not in chosen]
    assert min(kept) >= max(left)
    assert max(left) > 0  # the size really did cut frequent tokens
    assert torch.equal(torch.nonzero(mapping.t2d).flatten(), torch.tensor(expected))
    assert mapping.d2t.dtype == torch.int64 and mapping.t2d.dtype == torch.bool
    assert float(mapping.metadata["coverage"]) == pytest.approx(
        sum(counts[t] for t in chosen) / sum(counts.values()), abs=1e-6)


def test_mapping_loads_into_the_draft(tmp_path, tokenizer):
    path = write(tmp_path / "d.jsonl", ANSWERS)
    mapping, _ = load_or_build_vocab(tmp_path / "v.safetensors", path, tokenizer, 32)
    config = DraftConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, vocab_size=len(tokenizer), draft_vocab_size=32, target_hidden_size=32,
                         max_position_embeddings=128)
    draft = Eagle3Draft(config)
    draft.set_vocab_mapping(mapping.d2t, mapping.t2d)
    assert torch.equal(draft.d2t, mapping.d2t)


def test_size_is_capped_at_the_target_vocab(tmp_path, tokenizer):
    path = write(tmp_path / "d.jsonl", ANSWERS)
    mapping, _ = load_or_build_vocab(tmp_path / "v.safetensors", path, tokenizer, 32000)
    assert mapping.draft_vocab_size == len(tokenizer) == 512
    assert torch.equal(mapping.d2t, torch.zeros(512, dtype=torch.long))
    assert bool(mapping.t2d.all())


def test_target_vocab_larger_than_the_tokenizer(tmp_path, tokenizer):
    path = write(tmp_path / "d.jsonl", ANSWERS)
    mapping, _ = load_or_build_vocab(tmp_path / "v.safetensors", path, tokenizer, 40, target_vocab_size=640)
    assert mapping.t2d.shape == (640,) and mapping.draft_vocab_size == 40
    with pytest.raises(ValueError, match="512 tokens, more than the target vocabulary of 500"):
        load_or_build_vocab(tmp_path / "w.safetensors", path, tokenizer, 40, target_vocab_size=500)


def test_small_data_fills_up_to_the_exact_size():
    supervised = torch.tensor([0, 5, 0, 0, 2, 0, 0, 0])
    seen = torch.tensor([0, 5, 3, 0, 2, 0, 1, 0])
    assert select_draft_tokens(supervised, 6, always=[7], seen=seen) == [0, 1, 2, 4, 6, 7]
    assert select_draft_tokens(supervised, 2, always=[7]) == [1, 7]
    with pytest.raises(ValueError, match="smaller than the 3 special tokens"):
        select_draft_tokens(supervised, 2, always=[5, 6, 7])


def test_cached_file_is_reused_and_invalidated_when_data_changes(tmp_path, tokenizer, caplog):
    path = write(tmp_path / "d.jsonl", ANSWERS)
    out = tmp_path / "v.safetensors"
    first, reused = load_or_build_vocab(out, path, tokenizer, 24)
    stamp = os.stat(out).st_mtime_ns
    again, reused = load_or_build_vocab(out, path, tokenizer, 24)
    assert reused and os.stat(out).st_mtime_ns == stamp
    assert torch.equal(again.d2t, first.d2t)

    new_answers = ANSWERS + ["Berlin Berlin Berlin Berlin Berlin Berlin Berlin Berlin."] * 3
    write(path, new_answers)
    changed, reused = load_or_build_vocab(out, path, tokenizer, 24)
    assert not reused
    assert "data_fingerprint changed" in caplog.text
    berlin = tokenizer(" Berlin", add_special_tokens=False)["input_ids"]
    assert set(berlin) <= set(changed.target_ids().tolist())
    assert load_vocab_mapping(out).metadata["data_fingerprint"] == changed.metadata["data_fingerprint"]

    _, reused = load_or_build_vocab(out, path, tokenizer, 25)
    assert not reused
    _, reused = load_or_build_vocab(out, path, tokenizer, 25, config=DataConfig(overlong="drop"))
    assert not reused


def test_changed_tokenizer_invalidates(tmp_path, tokenizer):
    path = write(tmp_path / "d.jsonl", ANSWERS)
    out = tmp_path / "v.safetensors"
    load_or_build_vocab(out, path, tokenizer, 24)
    qwen = load_tiny_tokenizer("qwen3", tmp_path / "qwen3")
    mapping, reused = load_or_build_vocab(out, path, qwen, 24)
    assert not reused
    assert qwen.convert_tokens_to_ids("<|im_end|>") in mapping.target_ids().tolist()


def test_never_overwrites_a_file_that_is_not_a_vocab(tmp_path, tokenizer):
    path = write(tmp_path / "d.jsonl", ANSWERS)
    out = tmp_path / "weights.safetensors"
    from safetensors.torch import save_file

    save_file({"lm_head.weight": torch.zeros(2, 2)}, out)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="not a draftsmith vocab file"):
        load_or_build_vocab(out, path, tokenizer, 24)
    with pytest.raises(ValueError, match="not a draftsmith vocab file"):
        load_or_build_vocab(out, path, tokenizer, 24, force=True)
    assert out.read_bytes() == before


def test_inconsistent_mapping_is_refused(tmp_path):
    mapping = build_vocab_mapping([1, 3, 4], 6)
    assert mapping.d2t.tolist() == [1, 2, 2]
    assert mapping.t2d.tolist() == [False, True, False, True, True, False]
    from draftsmith.data import save_vocab_mapping

    broken = type(mapping)(mapping.d2t + 1, mapping.t2d, {})
    save_vocab_mapping(tmp_path / "v.safetensors", broken)
    with pytest.raises(ValueError, match="disagree"):
        load_vocab_mapping(tmp_path / "v.safetensors")


def test_reuse_respects_todays_bad_record_limit(tmp_path, tokenizer):
    path = write(tmp_path / "d.jsonl", ANSWERS)
    with path.open("a") as handle:
        handle.write("{broken\n")
    out = tmp_path / "v.safetensors"
    load_or_build_vocab(out, path, tokenizer, 24, config=DataConfig(max_bad_fraction=0.5))
    with pytest.raises(BadRecordError, match="1 bad records of 6"):
        load_or_build_vocab(out, path, tokenizer, 24)


def test_cli_writes_then_reuses(tmp_path, tokenizer_dir, capsys):
    data = write(tmp_path / "d.jsonl", ANSWERS)
    out = tmp_path / "vocab.safetensors"
    argv = ["vocab", "--tokenizer", str(tokenizer_dir), "--data", str(data), "--size", "24", "--out", str(out)]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(argv) == 0
    assert "reused" in capsys.readouterr().out
    assert load_vocab_mapping(out).draft_vocab_size == 24


def test_cli_user_errors_are_one_line(tmp_path, tokenizer_dir, capsys):
    argv = ["vocab", "--tokenizer", str(tokenizer_dir), "--data", str(tmp_path / "missing.jsonl"),
            "--out", str(tmp_path / "v.safetensors")]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("draftsmith vocab: error:") and "missing.jsonl" in error and "\n" not in error


def test_a_non_vocab_file_is_a_clear_error_and_is_kept(tmp_path):
    from draftsmith.data import load_vocab_mapping

    path = tmp_path / "notes.safetensors"
    path.write_bytes(b"definitely not safetensors")
    with pytest.raises(ValueError, match="is not a draftsmith vocab file"):
        load_vocab_mapping(path)
    assert path.read_bytes() == b"definitely not safetensors"


def test_cli_counts_from_the_store_in_cache_dir(tmp_path, tokenizer_dir, capsys):
    """The rendered samples stay in --cache-dir: a forced rebuild counts them again without rendering."""
    data = write(tmp_path / "d.jsonl", ANSWERS)
    cache = tmp_path / "cache"
    argv = ["vocab", "--tokenizer", str(tokenizer_dir), "--data", str(data), "--size", "24",
            "--out", str(tmp_path / "v.safetensors"), "--cache-dir", str(cache), "--num-workers", "1"]
    assert main(argv) == 0
    (store,) = cache.iterdir()
    stamp = os.stat(store / "meta.json").st_mtime_ns
    first = load_vocab_mapping(tmp_path / "v.safetensors")
    assert main(argv + ["--force"]) == 0
    assert list(cache.iterdir()) == [store] and os.stat(store / "meta.json").st_mtime_ns == stamp
    assert torch.equal(load_vocab_mapping(tmp_path / "v.safetensors").d2t, first.d2t)
