"""The sample store: same samples as the in-memory path, cached by key, atomic, parallel-identical.

References are independent of the store: ``build_dataset`` (the list path, itself tested against
the tokenizer in test_data_samples / test_data_render) and the tokenizer's own output.
"""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter

import numpy as np
import pytest
from tiny_tokenizers import load_tiny_tokenizer

from draftsmith.atomic import shared_cache_directory
from draftsmith.data import BadRecordError, DataConfig, SampleStore, build_dataset, build_store, pack
from draftsmith.data import store as store_module
from draftsmith.data.store import token_dtype

FILES = ("input_ids.bin", "loss_mask.bin", "offsets.bin", "sources.bin", "source_offsets.bin", "meta.json")


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Question {i}: what is the weather like in Paris?"},
                         {"role": "assistant", "content": "It is sunny and warm. " * (1 + i % 6)},
                         {"role": "user", "content": "Thank you!"},
                         {"role": "assistant", "content": f"Goodbye and have a nice day {i}."}]}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tiny_tokenizer("llama3", tmp_path_factory.mktemp("tok") / "llama3")


@pytest.fixture
def data(tmp_path):
    """30 conversations, one malformed line and one without an assistant turn (bad records at lines 7, 19)."""
    lines = [json.dumps(chat(i)) for i in range(30)]
    lines.insert(6, "{not json")
    lines.insert(18, json.dumps({"messages": [{"role": "user", "content": "hello?"}]}))
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


CONFIG = DataConfig(max_length=80, max_bad_fraction=0.1)


def test_store_holds_what_the_in_memory_path_renders(tmp_path, tokenizer, data):
    samples, report = build_dataset(data, tokenizer, CONFIG)
    store = build_store(data, tokenizer, CONFIG, tmp_path / "cache", num_workers=1)
    assert len(store) == len(samples) == 30
    assert [store.sample(i) for i in range(len(store))] == samples
    assert store.lengths.tolist() == [len(s) for s in samples]
    assert store.dtype == np.uint16 and (store.directory / "input_ids.bin").stat().st_size == 2 * store.num_tokens
    assert store.report.to_dict() == report.to_dict()
    assert store.report.counts() == {"malformed_json": 1, "no_assistant_turn": 1}
    assert store.report.skipped["malformed_json"][0].startswith(f"{data}:7 ")
    assert store.report.skipped["no_assistant_turn"] == [f"{data}:19"]
    assert store.report.truncated  # max_length 80 cuts the longer conversations


def test_store_ids_are_the_tokenizers_own(tmp_path, tokenizer, data):
    """Untruncated, a stored sample is exactly the chat template's text tokenized, and its supervised
    tokens are the assistant answers (trimmed, as the Llama-3 template does) each followed by <|eot_id|>."""
    store = build_store(data, tokenizer, DataConfig(max_length=4096, max_bad_fraction=0.1), tmp_path / "cache",
                        num_workers=1)
    for i in (0, 5, 29):
        record = chat(i)["messages"]
        text = tokenizer.apply_chat_template(record, tokenize=False)
        sample = store.sample(i)
        assert sample.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]
        supervised = [t for t, m in zip(sample.input_ids, sample.loss_mask) if m]
        answers = [m["content"].strip() + "<|eot_id|>" for m in record if m["role"] == "assistant"]
        assert tokenizer.decode(supervised) == "".join(answers)
        assert store.source(i) == f"{data}:{i + 1 + (i >= 6) + (i >= 17)}"  # bad lines 7 and 19 shift the rest


def test_packed_view_equals_pack(tmp_path, tokenizer, data):
    samples, _ = build_dataset(data, tokenizer, CONFIG)
    view = build_store(data, tokenizer, CONFIG, tmp_path / "cache", num_workers=1).view(pack=True, max_length=160)
    packed = list(pack(samples, 160))
    assert len(view) == len(packed) < len(samples)
    assert list(view) == packed
    assert view.lengths.tolist() == [len(s) for s in packed]
    chosen = view.select([3, 0])
    assert list(chosen) == [packed[3], packed[0]]


def test_second_build_renders_nothing_and_changes_invalidate(tmp_path, tokenizer, data, monkeypatch):
    cache = tmp_path / "cache"
    rendered = []
    original = store_module._render_chunk
    monkeypatch.setattr(store_module, "_render_chunk", lambda chunk, *a: rendered.append(len(chunk)) or original(chunk, *a))
    first = build_store(data, tokenizer, CONFIG, cache, num_workers=1)
    assert sum(rendered) == 30
    stamp = os.stat(first.directory / "meta.json").st_mtime_ns
    again = build_store(data, tokenizer, CONFIG, cache, num_workers=1)
    assert sum(rendered) == 30 and again.directory == first.directory
    assert os.stat(again.directory / "meta.json").st_mtime_ns == stamp

    directories = {first.directory}
    for config in (DataConfig(max_length=81, max_bad_fraction=0.1), DataConfig(max_length=80, overlong="drop",
                                                                                max_bad_fraction=0.1)):
        directories.add(build_store(data, tokenizer, config, cache, num_workers=1).directory)
    qwen = load_tiny_tokenizer("qwen3", tmp_path / "qwen3")
    directories.add(build_store(data, qwen, CONFIG, cache, num_workers=1).directory)
    with data.open("a") as handle:
        handle.write(json.dumps(chat(99)) + "\n")
    grown = build_store(data, tokenizer, CONFIG, cache, num_workers=1)
    directories.add(grown.directory)
    assert len(directories) == 5 and len(grown) == 31
    assert sum(rendered) == 30 + 30 + 30 + 30 + 31


def test_packing_is_not_part_of_the_key(tmp_path, tokenizer, data):
    a = build_store(data, tokenizer, CONFIG, tmp_path / "cache", num_workers=1)
    b = build_store(data, tokenizer, DataConfig(max_length=80, max_bad_fraction=0.1, pack=True), tmp_path / "cache")
    assert a.directory == b.directory


def test_a_failed_build_publishes_nothing(tmp_path, tokenizer, data, monkeypatch):
    cache = tmp_path / "cache"

    def crash(self, meta, report):
        for handle in self.files.values():
            handle.close()
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(store_module._Writer, "finish", crash)
    with pytest.raises(RuntimeError, match="killed"):
        build_store(data, tokenizer, CONFIG, cache, num_workers=1)
    assert list(cache.iterdir()) == []  # neither a store nor its staging directory
    monkeypatch.undo()
    (cache / ".leftover.tmp-x").mkdir()  # what a SIGKILL leaves: never read
    store = build_store(data, tokenizer, CONFIG, cache, num_workers=1)
    assert len(store) == 30


def test_a_store_someone_else_published_first_is_kept(tmp_path):
    """Two ranks building the same store: the second to finish keeps the first's (readers may map it)."""
    target = tmp_path / "cache" / "key"
    with shared_cache_directory(target) as staging:
        (staging / "meta.json").write_text("first")
        with shared_cache_directory(target) as late:
            (late / "meta.json").write_text("second")
    assert (target / "meta.json").read_text() == "second"  # the inner build finished first
    assert [p.name for p in target.parent.iterdir()] == ["key"]  # the later copy is discarded


def test_parallel_workers_write_the_same_bytes(tmp_path, tokenizer, data):
    one = build_store(data, tokenizer, CONFIG, tmp_path / "one", num_workers=1)
    two = build_store(data, tokenizer, CONFIG, tmp_path / "two", num_workers=2, chunk_size=1)  # 30 chunks: a pool
    for name in FILES:
        assert (one.directory / name).read_bytes() == (two.directory / name).read_bytes(), name


def test_bad_share_is_checked_on_reuse(tmp_path, tokenizer, data):
    build_store(data, tokenizer, CONFIG, tmp_path / "cache", num_workers=1)
    with pytest.raises(BadRecordError, match="2 of 32 records"):
        build_store(data, tokenizer, DataConfig(max_length=80, max_bad_fraction=0.05), tmp_path / "cache")


def test_counts_equal_counting_the_in_memory_samples(tmp_path, tokenizer, data):
    samples, _ = build_dataset(data, tokenizer, CONFIG)
    store = build_store(data, tokenizer, CONFIG, tmp_path / "cache", num_workers=1)
    supervised, seen = store.token_counts(len(tokenizer))
    expected_supervised = Counter(t for s in samples for t, m in zip(s.input_ids, s.loss_mask) if m)
    expected_seen = Counter(t for s in samples for t in s.input_ids)
    assert {i: int(c) for i, c in enumerate(supervised) if c} == dict(expected_supervised)
    assert {i: int(c) for i, c in enumerate(seen) if c} == dict(expected_seen)
    with pytest.raises(ValueError, match=f"{data}:1: the tokenizer produced token id .* outside the target vocabulary of 100"):
        store.token_counts(100)


def test_a_store_pickles_as_its_directory(tmp_path, tokenizer, data):
    view = build_store(data, tokenizer, CONFIG, tmp_path / "cache", num_workers=1).view()
    blob = pickle.dumps(view)
    assert len(blob) < 2000  # the maps are reopened, not copied
    assert list(pickle.loads(blob)) == list(view)


def test_ids_are_int32_past_65536_tokens():
    class Big:
        def __len__(self):
            return 1 << 17

    class Small:
        def __len__(self):
            return 1 << 16

    assert token_dtype(Big()) == np.int32 and token_dtype(Small()) == np.uint16
