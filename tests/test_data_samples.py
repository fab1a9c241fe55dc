"""Length policy, packing, padding and the one-call ``build_dataset``."""

from __future__ import annotations

import json

import pytest
from tiny_tokenizers import load_tiny_tokenizer

from draftsmith.data import (
    BadRecordError,
    DataConfig,
    Sample,
    build_dataset,
    pack,
    pad_batch,
    parse_conversation,
    tokenize_conversation,
)


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


SHORT = chat("Hi", "Hello!")
LONG = chat("Please write a short poem about the sea.", " ".join(["The wind and the stars over the sea."] * 12))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tiny_tokenizer("llama3", tmp_path_factory.mktemp("tok") / "llama3")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_overlong_samples_are_truncated_and_counted(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [SHORT, LONG, SHORT])
    full = tokenize_conversation(parse_conversation(LONG), tokenizer)
    limit = len(full) - 10
    samples, report = build_dataset(path, tokenizer, DataConfig(max_length=limit))
    assert [len(s) for s in samples][1] == limit
    assert samples[1].input_ids == full.input_ids[:limit]
    assert samples[1].loss_mask == full.loss_mask[:limit]
    assert report.truncated == [f"{path}:2"]
    assert report.bad == 0


def test_overlong_samples_are_dropped_and_counted(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [SHORT, LONG, SHORT])
    limit = len(tokenize_conversation(parse_conversation(LONG), tokenizer)) - 1
    samples, report = build_dataset(path, tokenizer, DataConfig(max_length=limit, overlong="drop"))
    assert [s.sources for s in samples] == [(f"{path}:1",), (f"{path}:3",)]
    assert report.dropped_counts() == {"overlong": 1}
    assert "dropped overlong: 1" in report.format()
    assert report.bad == 0  # a policy choice, not bad data


def test_truncation_that_leaves_nothing_supervised_drops_the_sample(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "d.jsonl", [LONG])
    first_supervised = tokenize_conversation(parse_conversation(LONG), tokenizer).loss_mask.index(1)
    samples, report = build_dataset(path, tokenizer, DataConfig(max_length=first_supervised))
    assert samples == []
    assert report.dropped_counts() == {"nothing_supervised": 1}
    assert report.truncated == []


def test_packing_keeps_documents_apart(tmp_path, tokenizer):
    records = [chat(f"Question {i}?", "Answer " * (i + 1)) for i in range(6)]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    singles, _ = build_dataset(path, tokenizer, DataConfig(max_length=160))
    packs, _ = build_dataset(path, tokenizer, DataConfig(max_length=160, pack=True))
    assert len(packs) < len(singles)
    assert all(len(p) <= 160 for p in packs)
    # concatenating the packs gives back the singles in order
    assert [t for p in packs for t in p.input_ids] == [t for s in singles for t in s.input_ids]
    assert [m for p in packs for m in p.loss_mask] == [m for s in singles for m in s.loss_mask]
    assert [src for p in packs for src in p.sources] == [f"{path}:{i}" for i in range(1, 7)]
    for p in packs:
        lengths = [len(s) for s in singles if s.sources[0] in p.sources]
        assert p.document_ids == [d for d, n in enumerate(lengths, 1) for _ in range(n)]
        assert p.position_ids == [k for n in lengths for k in range(n)]


def test_pack_rejects_samples_longer_than_the_pack():
    sample = Sample.single([5] * 10, [1] * 10, "x:1")
    with pytest.raises(ValueError, match="x:1: sample of 10 tokens exceeds max_length 8"):
        list(pack([sample], 8))


def test_pad_batch_right_pads_with_zero_documents():
    a = Sample.single([7, 8, 9], [0, 1, 1], "a")
    b = Sample([4, 5, 6, 7, 8], [0, 1, 0, 0, 1], [1, 1, 2, 2, 2], [0, 1, 0, 1, 2], ("b", "c"))
    batch = pad_batch([a, b], pad_token_id=3)
    assert batch == {
        "input_ids": [[7, 8, 9, 3, 3], [4, 5, 6, 7, 8]],
        "loss_mask": [[0, 1, 1, 0, 0], [0, 1, 0, 0, 1]],
        "attention_mask": [[1, 1, 1, 0, 0], [1, 1, 2, 2, 2]],
        "position_ids": [[0, 1, 2, 0, 0], [0, 1, 0, 1, 2]],
    }


def test_template_rejections_count_toward_the_bad_share(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "strict")
    from transformers import AutoTokenizer

    strict = AutoTokenizer.from_pretrained(tmp_path / "strict")
    strict.chat_template = (
        "{% for m in messages %}{% if 'forbidden' in m.content %}{{ raise_exception('forbidden word') }}{% endif %}"
        "<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    path = write_jsonl(tmp_path / "d.jsonl", [SHORT] * 9 + [chat("a forbidden question", "no")])
    samples, report = build_dataset(path, strict, DataConfig(max_bad_fraction=0.1))
    assert len(samples) == 9
    assert report.counts() == {"template_error": 1}
    assert "forbidden word" in report.skipped["template_error"][0]
    with pytest.raises(BadRecordError, match="template_error: 1"):
        build_dataset(path, strict, DataConfig())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_length": 1}, "max_length"),
        ({"overlong": "cut"}, "overlong"),
        ({"channels": "analysis"}, "channels"),
        ({"max_bad_fraction": 1.5}, "max_bad_fraction"),
        ({"pack": "yes"}, "pack"),
    ],
)
def test_config_is_validated(options, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**options)
