"""Reading JSONL / JSON / Parquet / in-memory records into one form, and accounting for bad records."""

from __future__ import annotations

import json
import sys

import pytest

from draftsmith.data import (
    BadRecordError,
    DataReport,
    Message,
    MissingExtraError,
    iter_conversations,
    load_conversations,
    parse_conversation,
)

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}

# One line per failure kind, each with the reason it must be counted under.
BAD_LINES = [
    ("malformed_json", b'{"messages": [{"role": "user", "content": "Hi"}\n'),
    ("missing_role", json.dumps({"messages": [{"content": "Hi"}, {"role": "assistant", "content": "Yo"}]}).encode()),
    ("unknown_role", json.dumps({"messages": [{"role": "narrator", "content": "Once"},
                                              {"role": "assistant", "content": "Yo"}]}).encode()),
    ("empty_conversation", json.dumps({"messages": []}).encode()),
    ("no_assistant_turn", json.dumps({"messages": [{"role": "user", "content": "Hi"}]}).encode()),
    ("non_text_content", json.dumps({"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/cat.png"}}]},
        {"role": "assistant", "content": "A cat."}]}).encode()),
    ("invalid_utf8", b'{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "ok"}]}'),
    ("invalid_utf8", json.dumps({"messages": [{"role": "user", "content": "\ud800"},
                                              {"role": "assistant", "content": "ok"}]}).encode()),
    ("not_a_conversation", json.dumps({"text": "plain pretraining text"}).encode()),
    ("missing_content", json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "ok"}]}).encode()),
    ("bad_tool_call", json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None,
        "tool_calls": [{"function": {"name": "f", "arguments": "{not json"}}]}]}).encode()),
]


def write_bad_corpus(path, good_count):
    """Good records, then one bad record per kind; returns {reason: [line numbers]}."""
    lines = [json.dumps(GOOD).encode()] * good_count + [b"   "]  # a blank line is not a record
    expected: dict[str, list[int]] = {}
    for reason, raw in BAD_LINES:
        lines.append(raw.rstrip(b"\n"))
        expected.setdefault(reason, []).append(len(lines))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return expected


def test_bad_records_are_skipped_and_counted_with_file_and_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    expected = write_bad_corpus(path, good_count=200)
    conversations, report = load_conversations(path, max_bad_fraction=0.2)
    print(report.format())
    assert len(conversations) == 200
    assert report.records == 200 + len(BAD_LINES)
    assert report.counts() == {reason: len(lines) for reason, lines in expected.items()}
    for reason, lines in expected.items():
        assert [where.split(" ")[0] for where in report.skipped[reason]] == [f"{path}:{n}" for n in lines]
    summary = report.format()
    for reason in expected:
        assert reason in summary
    assert f"{path}:{expected['malformed_json'][0]}" in summary


def test_bad_share_over_the_limit_stops_with_a_clear_error(tmp_path):
    path = tmp_path / "mixed.jsonl"
    write_bad_corpus(path, good_count=200)  # 11 bad of 211: 5.2%
    with pytest.raises(BadRecordError, match=r"11 of 211 records \(5\.21%\) are bad.*1\.00%.*malformed_json: 1"):
        load_conversations(path)
    with pytest.raises(BadRecordError):
        load_conversations(path, max_bad_fraction=0.05)
    _, report = load_conversations(path, max_bad_fraction=0.06)
    assert report.bad == 11


def test_share_at_the_default_limit_passes(tmp_path):
    path = tmp_path / "mostly_good.jsonl"
    path.write_text("\n".join([json.dumps(GOOD)] * 99 + ["{oops"]) + "\n")
    conversations, report = load_conversations(path)  # exactly 1%: allowed
    assert len(conversations) == 99 and report.counts() == {"malformed_json": 1}


def test_openai_messages_are_normalized():
    record = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "reasoning_content": "Use the tool.",
             "tool_calls": [{"id": "c1", "type": "function",
                             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
            {"role": "assistant", "content": "Sunny.", "thinking": "Report."},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    }
    conversation = parse_conversation(record, "f.jsonl:7")
    assert conversation.source == "f.jsonl:7"
    assert [m.role for m in conversation.messages] == ["developer", "user", "assistant", "tool", "assistant"]
    assert conversation.messages[0].content == "Be brief."
    call = conversation.messages[2]
    assert call.content == "" and call.reasoning == "Use the tool."
    assert call.tool_calls[0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert conversation.messages[3].tool_call_id == "c1"
    assert conversation.messages[4].reasoning == "Report."
    assert conversation.tools[0]["function"]["name"] == "get_weather"
    shown = conversation.messages[4].to_template()
    assert shown["thinking"] == shown["reasoning_content"] == "Report."
    assert "thinking" not in conversation.messages[1].to_template()


def test_sharegpt_conversations_are_normalized():
    record = {
        "system": "Be kind.",
        "conversations": [
            {"from": "human", "value": "Weather?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Rome"}}'},
            {"from": "observation", "value": "rain"},
            {"from": "gpt", "value": "It rains."},
        ],
    }
    messages = parse_conversation(record).messages
    assert messages == (
        Message("system", "Be kind."),
        Message("user", "Weather?"),
        Message("assistant", "", tool_calls=({"type": "function",
                                              "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},)),
        Message("tool", "rain"),
        Message("assistant", "It rains."),
    )


def test_messages_stored_as_a_json_string():
    conversation = parse_conversation({"messages": json.dumps(GOOD["messages"])})
    assert [m.content for m in conversation.messages] == ["Hi", "Hello!"]


def test_json_array_records_keep_their_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n  {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},\n'
                    '  {"conversations": [{"from": "alien", "value": "a"}]},\n'
                    '  {"messages": [{"role": "user", "content": "c"},\n    {"role": "assistant", "content": "d"}]}\n]\n')
    conversations, report = load_conversations(path, max_bad_fraction=0.5)
    assert [c.source for c in conversations] == [f"{path}:2", f"{path}:4"]
    assert report.skipped["unknown_role"][0].startswith(f"{path}:3 ")


def test_json_lines_saved_as_json_are_read_as_lines(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n")
    conversations, _ = load_conversations(path)
    assert [c.source for c in conversations] == [f"{path}:1", f"{path}:2"]


def test_malformed_json_array_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"messages": []},\n  {"messages": [}\n]\n')
    with pytest.raises(ValueError, match=f"{path}:3: malformed JSON array"):
        load_conversations(path)


def test_parquet_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "data.parquet"
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "critic", "content": "Hello"}]},
        {"messages": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    conversations, report = load_conversations(path, max_bad_fraction=0.5)
    assert [c.messages[-1].content for c in conversations] == ["Hello", "Ciao"]
    assert [c.source for c in conversations] == [f"{path}:1", f"{path}:3"]
    assert report.skipped["unknown_role"][0].startswith(f"{path}:2 ")


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingExtraError, match=r"pip install draftsmith\[parquet\]"):
        load_conversations(path)


def test_in_memory_records_and_dataset_like_iterables():
    class FakeDataset:  # the shape of a datasets.Dataset: iterable of dict rows with .info
        class info:
            dataset_name = "chats"

        def __iter__(self):
            return iter([GOOD, {"messages": 5}])

    report = DataReport()
    conversations = list(iter_conversations([FakeDataset(), [GOOD]], report))
    assert [c.source for c in conversations] == ["<dataset chats>:1", "<records>:1"]
    assert report.counts() == {"not_a_conversation": 1}
    conversations, _ = load_conversations([GOOD, GOOD])
    assert len(conversations) == 2
    conversations, _ = load_conversations(GOOD)
    assert [c.source for c in conversations] == ["<records>:1"]


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_conversations(tmp_path / "nope.jsonl")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"unsupported data file type '\.csv'"):
        load_conversations(tmp_path / "data.csv")
