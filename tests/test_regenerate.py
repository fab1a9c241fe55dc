"""``draftsmith regenerate``: greedy equality with ``model.generate``, resume, refusal, bad records, HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from draftsmith.cli import main
from draftsmith.regenerate import (
    GenerationOptions,
    HttpBackend,
    LocalBackend,
    RegenerateOptions,
    Reply,
    parse_harmony,
    regenerate,
)
from tiny_models import save_tiny_target
from tiny_tokenizers import save_tiny_tokenizer

CONVERSATIONS = [
    {"id": "a", "messages": [{"role": "user", "content": "w10 w11 w12"}]},
    {"id": "b", "messages": [
        {"role": "system", "content": "w40"},
        {"role": "user", "content": "w20"},
        {"role": "assistant", "content": "old answer to be replaced"},
        {"role": "user", "content": "w21 w22 w23 w24 w25"},
        {"role": "assistant", "content": "another old answer"},
    ]},
    {"id": "c", "conversations": [{"from": "human", "value": "w30 w31"}, {"from": "gpt", "value": "old"}]},
    {"id": "d", "messages": [
        {"role": "user", "content": "w50"},
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f"}}]},
        {"role": "tool", "content": "w51"},
        {"role": "assistant", "content": "uses the old tool result"},
    ]},
]


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


class EchoBackend:
    """Deterministic stand-in: answers with the last user text and counts what it was asked."""

    batch_size = 2

    def __init__(self):
        self.prompts = []

    def complete(self, prompts):
        self.prompts.extend(prompts)
        return [Reply(f"echo {p[-1]['content']} after {len(p)}") for p in prompts]


@pytest.fixture(scope="module")
def llama_target(tmp_path_factory):
    """A tiny Llama whose special ids are its tokenizer's, so generation stops at ``<|eot_id|>``."""
    directory = save_tiny_tokenizer("llama3", tmp_path_factory.mktemp("llama"))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return save_tiny_target("llama", directory, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                            initializer_range=0.3)  # large weights: replies that depend on the prompt


def test_local_backend_equals_greedy_generate(tmp_path, llama_target):
    source = _write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    backend = LocalBackend.from_pretrained(llama_target, GenerationOptions(max_new_tokens=6, batch_size=3))
    report = regenerate(RegenerateOptions(source, tmp_path / "out.jsonl", progress=False), backend)
    assert report.written == 4 and not report.failed and not report.data.bad

    model = AutoModelForCausalLM.from_pretrained(llama_target).eval()
    tokenizer = AutoTokenizer.from_pretrained(llama_target)
    results = {r["id"]: r for r in _read_jsonl(tmp_path / "out.jsonl")}
    roles = {k: [m["role"] for m in r["messages"]] for k, r in results.items()}
    assert roles == {"a": ["user", "assistant"], "b": ["system", "user", "assistant", "user", "assistant"],
                     "c": ["user", "assistant"], "d": ["user", "assistant"]}
    checked = 0
    for result in results.values():
        messages = result["messages"]
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            # Unbatched, unpadded greedy generation from the *regenerated* history before this turn.
            text = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            new = out[0, ids.shape[1]:].tolist()
            if tokenizer.eos_token_id in new:
                new = new[:new.index(tokenizer.eos_token_id)]
            assert message["content"] == tokenizer.decode(new, skip_special_tokens=True)
            checked += 1
    assert checked == 5


def test_multi_turn_history_is_the_regenerated_one(tmp_path):
    source = _write_jsonl(tmp_path / "in.jsonl", [CONVERSATIONS[1]])
    backend = EchoBackend()
    regenerate(RegenerateOptions(source, tmp_path / "out.jsonl", progress=False), backend)
    second_prompt = backend.prompts[1]
    assert second_prompt[2] == {"role": "assistant", "content": "echo w20 after 2"}
    assert [m["content"] for m in _read_jsonl(tmp_path / "out.jsonl")[0]["messages"]][-1] == \
        "echo w21 w22 w23 w24 w25 after 4"


def test_resume_after_a_killed_run_skips_finished_records(tmp_path):
    source = _write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    complete = tmp_path / "complete.jsonl"
    regenerate(RegenerateOptions(source, complete, progress=False), EchoBackend())
    lines = complete.read_text().splitlines(keepends=True)

    # A kill while writing: one whole line, then half of the next.
    partial = tmp_path / "partial.jsonl"
    partial.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    backend = EchoBackend()
    report = regenerate(RegenerateOptions(source, partial, resume=True, progress=False), backend)

    assert report.already_done == 1 and report.written == 3
    first_done = json.loads(lines[0])["source_line"]
    assert all(p != CONVERSATIONS[first_done - 1]["messages"][:len(p)] for p in backend.prompts)
    by_line = lambda path: {r["source_line"]: r for r in _read_jsonl(path)}  # noqa: E731
    assert by_line(partial) == by_line(complete)
    assert len(_read_jsonl(partial)) == 4


def test_existing_output_is_never_overwritten_without_asking(tmp_path):
    source = _write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:1])
    output = tmp_path / "out.jsonl"
    output.write_text("precious\n")
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        regenerate(RegenerateOptions(source, output, progress=False), EchoBackend())
    assert output.read_text() == "precious\n"
    with pytest.raises(ValueError, match="not a regenerated conversation"):
        regenerate(RegenerateOptions(source, output, resume=True, progress=False), EchoBackend())
    assert output.read_text() == "precious\n"
    regenerate(RegenerateOptions(source, output, overwrite=True, progress=False), EchoBackend())
    assert _read_jsonl(output)[0]["messages"][-1]["content"] == "echo w10 w11 w12 after 1"


def test_resume_refuses_an_output_of_a_different_input(tmp_path):
    source = _write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:2])
    output = tmp_path / "out.jsonl"
    regenerate(RegenerateOptions(source, output, progress=False), EchoBackend())
    _write_jsonl(source, [CONVERSATIONS[2], CONVERSATIONS[1]])
    with pytest.raises(ValueError, match="different input"):
        regenerate(RegenerateOptions(source, output, resume=True, progress=False), EchoBackend())


def test_bad_records_are_counted_and_too_many_stop_before_generating(tmp_path):
    source = tmp_path / "in.jsonl"
    good = json.dumps(CONVERSATIONS[0]) + "\n"
    source.write_bytes(b"".join([
        good.encode(),
        b"{not json\n",
        b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n',
        b'{"messages": [{"role": "wizard", "content": "x"}]}\n',
        b'{"messages": []}\n',
        b'{"text": "no conversation"}\n',
        b'{"messages": [{"role": "assistant", "content": "x"}]}\n',
        b'{"messages": [{"role": "user", "content": [{"type": "image"}]}]}\n',
        b'{"messages": [{"role": "system", "content": "only a system prompt"}]}\n',
        b'{"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": null, '
        b'"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]}\n',
    ]))
    backend = EchoBackend()
    with pytest.raises(ValueError, match="9 of 10 records"):
        regenerate(RegenerateOptions(source, tmp_path / "out.jsonl", progress=False), backend)
    assert backend.prompts == []

    report = regenerate(RegenerateOptions(source, tmp_path / "out.jsonl", overwrite=True, max_bad_fraction=1.0,
                                          progress=False), backend)
    assert report.written == 1
    expected = {"malformed_json": 2, "invalid_utf8": 3, "unknown_role": 4, "empty_conversation": 5,
                "not_a_conversation": 6, "starts_with_assistant": 7, "non_text_content": 8,
                "assistant_before_user": 9, "nothing_to_regenerate": 10}
    assert report.data.counts() == {reason: 1 for reason in expected}
    for reason, line in expected.items():
        assert report.data.skipped[reason][0].startswith(f"{source}:{line}")
    assert f"malformed_json: 1 ({source}:2" in report.summary()


def test_json_input_and_sharegpt_prompts(tmp_path):
    """Input comes through the training data readers, so a JSON array works as JSONL does."""
    source = tmp_path / "in.json"
    source.write_text(json.dumps([CONVERSATIONS[2], {"conversations": [{"from": "human", "value": "w60"}]}], indent=1))
    report = regenerate(RegenerateOptions(source, tmp_path / "out.jsonl", progress=False), EchoBackend())
    assert report.written == 2
    results = sorted(_read_jsonl(tmp_path / "out.jsonl"), key=lambda r: r["source_line"])
    assert [r["messages"] for r in results] == [
        [{"role": "user", "content": "w30 w31"}, {"role": "assistant", "content": "echo w30 w31 after 1"}],
        [{"role": "user", "content": "w60"}, {"role": "assistant", "content": "echo w60 after 1"}],
    ]


class FakeChatServer:
    """A threaded OpenAI-style chat endpoint on 127.0.0.1 that fails on cue."""

    def __init__(self):
        self.bodies, self.fail_first_with, self.reject = [], None, set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append((self.path, body))
                last = body["messages"][-1]["content"]
                status = fake.fail_first_with
                fake.fail_first_with = None
                if status is None and last in fake.reject:
                    status = 400
                if status is not None:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"nope")
                    return
                message = {"role": "assistant", "content": f"served {last}", "reasoning_content": f"thought {last}"}
                payload = json.dumps({"choices": [{"message": message}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_http_backend_keeps_reasoning_and_retries_server_errors(tmp_path, chat_server):
    chat_server.fail_first_with = 503
    source = _write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS)
    generation = GenerationOptions(max_new_tokens=7, temperature=0.5, top_p=0.9, batch_size=3)
    backend = HttpBackend(chat_server.url, "tiny", generation, concurrency=2, retries=2)
    report = regenerate(RegenerateOptions(source, tmp_path / "out.jsonl", progress=False), backend)
    backend.close()

    assert report.written == 4 and not report.failed
    results = {r["id"]: r["messages"] for r in _read_jsonl(tmp_path / "out.jsonl")}
    assert results["b"][-1] == {"role": "assistant", "content": "served w21 w22 w23 w24 w25",
                                "reasoning_content": "thought w21 w22 w23 w24 w25"}
    assert results["b"][2]["content"] == "served w20"
    path, body = chat_server.bodies[-1]
    assert path == "/v1/chat/completions"
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"]) == ("tiny", 7, 0.5, 0.9)
    assert len(chat_server.bodies) == 5 + 1  # five replies plus the retried 503


def test_cli_http_run_refuses_rerun_and_resume_retries_failures(tmp_path, chat_server, capsys):
    source = _write_jsonl(tmp_path / "in.jsonl", CONVERSATIONS[:3])
    output = tmp_path / "out.jsonl"
    chat_server.reject = {"w30 w31"}
    argv = ["regenerate", str(source), "-o", str(output), "--endpoint", chat_server.url, "--model", "tiny",
            "--no-progress", "--retries", "0"]
    assert main(argv) == 1
    assert f"failed at {source}:3: RuntimeError: HTTP 400" in capsys.readouterr().err
    assert sorted(r["id"] for r in _read_jsonl(output)) == ["a", "b"]

    assert main(argv) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err

    chat_server.reject = set()
    assert main(argv + ["--resume"]) == 0
    assert sorted(r["id"] for r in _read_jsonl(output)) == ["a", "b", "c"]


def test_harmony_output_splits_analysis_and_final():
    text = ("<|channel|>analysis<|message|>Think it over.<|end|>"
            "<|start|>assistant<|channel|>final<|message|>The answer.")
    assert parse_harmony(text) == Reply("The answer.", "Think it over.")


@pytest.mark.parametrize("kind, model_kind, generated, expected", [
    ("qwen3", "qwen3", "<think>\nLet me think.\n</think>\n\nThe answer is 42.<|im_end|>junk",
     Reply("The answer is 42.", "Let me think.")),
    ("harmony", "gpt_oss", "<|channel|>analysis<|message|>Let me think.<|end|><|start|>assistant<|channel|>final"
     "<|message|>The answer is 42.<|return|>junk", Reply("The answer is 42.", "Let me think.")),
    ("llama3", "llama", "The answer is 42.<|eot_id|>junk", Reply("The answer is 42.")),
])
def test_generated_tokens_split_into_reasoning_and_answer(tmp_path, kind, model_kind, generated, expected):
    """What a real target emits, in each family's format, up to its stop token."""
    directory = save_tiny_tokenizer(kind, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    save_tiny_target(model_kind, directory, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    backend = LocalBackend.from_pretrained(directory, GenerationOptions())
    tokens = tokenizer(generated, add_special_tokens=False).input_ids
    assert backend.reply_from_tokens(tokens) == expected
