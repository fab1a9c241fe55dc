"""Replace the assistant turns of a prompt set with the target's own responses.

A draft trained on what the target itself says accepts more tokens than one trained on
another model's answers, so users regenerate their data with the target first.

Turn policy: every assistant turn is regenerated in order, each given the *regenerated*
history before it; a conversation that ends on a user turn gets one new assistant answer.
An assistant turn that calls tools ends the conversation (it and everything after it are
dropped), because the tool results that follow answer the original calls, not the new ones.

Input is whatever :mod:`draftsmith.data` reads (JSONL, JSON, Parquet; OpenAI ``messages``
or ShareGPT ``conversations``), with the same bad-record accounting. Output is JSONL, one
finished conversation per line in OpenAI ``messages`` form (new turns carry
``reasoning_content`` when the target reasons), with the input line (or row) and a hash of
the input record. Lines are appended and flushed as conversations finish, so
a killed run loses at most the conversations in flight; a rerun with ``resume`` skips
what is done and refuses an output made from a different input.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from draftsmith.data.conversation import RecordError, parse_conversation
from draftsmith.data.readers import iter_records
from draftsmith.data.report import DataReport
from draftsmith.target.capture import TargetLoadOptions, TargetModel


@dataclass
class Reply:
    """One generated assistant turn."""

    content: str
    reasoning_content: str | None = None

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning_content:
            message["reasoning_content"] = self.reasoning_content
        return message


class Backend(Protocol):
    """Answers a list of chat prompts (message lists ending before the turn to write).

    An entry may come back as an exception: that conversation fails alone and is retried
    by the next ``resume`` run.
    """

    batch_size: int

    def complete(self, prompts: Sequence[list[dict[str, Any]]]) -> list[Reply | Exception]: ...


@dataclass
class RegenerateOptions:
    """Files and run policy; generation settings belong to the backend."""

    input: Path
    output: Path
    resume: bool = False
    overwrite: bool = False
    max_bad_fraction: float = 0.01
    progress: bool = True


@dataclass
class RegenerateReport:
    """Counts for the final summary; bad input records are accounted in ``data`` (reason, file:line)."""

    data: DataReport = field(default_factory=DataReport)
    already_done: int = 0
    written: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # input location -> backend error

    def summary(self) -> str:
        lines = [f"{self.written} conversations regenerated, {self.already_done} already done, "
                 f"{self.data.bad} bad records skipped, {len(self.failed)} failed (of {self.data.records})"]
        lines += self.data.format().splitlines()[1:]
        lines += [f"  failed at {where}: {error}" for where, error in list(self.failed.items())[:10]]
        if self.failed:
            lines.append("  rerun with --resume to retry the failed conversations")
        return "\n".join(lines)


def _with_open_answer(record: dict[str, Any]) -> dict[str, Any]:
    """A prompt-only record with an empty assistant turn appended, in the record's own format."""
    if "messages" in record:
        return {**record, "messages": [*record["messages"], {"role": "assistant", "content": ""}]}
    return {**record, "conversations": [*record["conversations"], {"from": "gpt", "value": ""}]}


def conversation_turns(record: Any, location: str) -> list[dict[str, Any]]:
    """Normalized messages of one input record, planned as in the module doc; RecordError if unusable.

    Reading and normalizing are :mod:`draftsmith.data`'s, so regeneration accepts and rejects
    exactly what training does, except that a prompt without any assistant turn is welcome here.
    """
    if isinstance(record, RecordError):
        raise record
    try:
        conversation = parse_conversation(record, location)
    except RecordError as error:
        if error.reason != "no_assistant_turn":
            raise
        conversation = parse_conversation(_with_open_answer(record), location)
    return plan_turns([message.to_template() for message in conversation.messages])


def plan_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns to walk through: assistant entries mark where a new reply is generated (see module doc)."""
    cut = next((i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("tool_calls")), len(messages))
    turns = messages[:cut]
    if turns and turns[-1]["role"] == "user":
        turns = turns + [{"role": "assistant", "content": ""}]
    first_assistant = next((i for i, m in enumerate(turns) if m["role"] == "assistant"), None)
    if first_assistant is None:
        raise RecordError("nothing_to_regenerate", "no assistant turn or final user turn before the first tool call")
    if not any(m["role"] == "user" for m in turns[:first_assistant]):
        raise RecordError("assistant_before_user", "the first assistant turn has no user turn before it")
    return turns


@dataclass
class _Conversation:
    line: int  # 1-based input line (or row)
    sha1: str
    record: dict[str, Any]
    turns: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    position: int = 0

    def next_prompt(self) -> list[dict[str, Any]] | None:
        """Move the non-assistant turns into the history; the prompt for the next reply, or None when done."""
        while self.position < len(self.turns) and self.turns[self.position]["role"] != "assistant":
            self.history.append(self.turns[self.position])
            self.position += 1
        return list(self.history) if self.position < len(self.turns) else None

    def accept(self, reply: Reply) -> None:
        self.history.append(reply.message())
        self.position += 1

    def result(self) -> dict[str, Any]:
        out = {k: v for k, v in self.record.items() if k not in ("messages", "conversations")}
        out.update(messages=self.history, source_line=self.line, source_sha1=self.sha1)
        return out


def read_done(output: Path) -> dict[int, str]:
    """``{input line: input hash}`` of finished conversations; a torn last line is cut off first."""
    if not output.exists():
        return {}
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(output, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
        data = data[: data.rfind(b"\n") + 1]
    done: dict[int, str] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            entry = json.loads(raw)
            done[int(entry["source_line"])] = str(entry["source_sha1"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{output}:{number} is not a regenerated conversation; refusing to resume into it") from None
    return done


def check_output(options: RegenerateOptions) -> bool:
    """Refuse to touch an existing output unless asked; call before loading a large target. True if it exists."""
    if options.resume and options.overwrite:
        raise ValueError("choose one of --resume and --overwrite")
    exists = options.output.exists() and options.output.stat().st_size > 0
    if exists and not (options.resume or options.overwrite):
        raise FileExistsError(
            f"{options.output} already exists; pass --resume to continue it or --overwrite to replace it"
        )
    return exists


def _prepare_output(options: RegenerateOptions) -> dict[int, str]:
    exists = check_output(options)
    if options.overwrite or not exists:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_bytes(b"")
        return {}
    return read_done(options.output)


def _line(location: str) -> int:
    return int(location.rsplit(":", 1)[1])


def _fingerprint(record: Any) -> str:
    """Hash of a record's content, so a resumed run notices an input that changed under it."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def load_conversations(options: RegenerateOptions, done: dict[int, str], report: RegenerateReport
                       ) -> list[_Conversation]:
    """The conversations still to do; too many bad records stop the run before any generation."""
    pending: list[_Conversation] = []
    for location, record in iter_records(options.input):
        report.data.count_record()
        line, sha1 = _line(location), _fingerprint(record)
        if line in done:
            if done[line] != sha1:
                raise ValueError(f"{options.output} holds record {line} of a different input ({location} changed); "
                                 f"use --overwrite or another output path")
            report.already_done += 1
            continue
        try:
            turns = conversation_turns(record, location)
        except RecordError as error:
            report.data.skip(error.reason, location, error.detail)
            continue
        pending.append(_Conversation(line, sha1, record, turns))
    report.data.check(options.max_bad_fraction)
    return pending


def regenerate(options: RegenerateOptions, backend: Backend) -> RegenerateReport:
    """Regenerate every pending conversation of ``options.input`` into ``options.output``.

    Conversations go to the backend ``backend.batch_size`` at a time; within a batch all
    first replies are generated together, then all second replies, and so on, and each
    conversation is appended to the output as soon as its last reply is in.
    """
    report = RegenerateReport()
    done = _prepare_output(options)
    pending = load_conversations(options, done, report)
    bar = tqdm(total=report.data.records - report.data.bad, initial=report.already_done,
               desc="regenerate", unit="conv", disable=not options.progress)
    with open(options.output, "a", encoding="utf-8") as out, bar:
        for start in range(0, len(pending), backend.batch_size):
            active = pending[start:start + backend.batch_size]
            while active:
                prompts = [(conversation, conversation.next_prompt()) for conversation in active]
                finished = [c for c, prompt in prompts if prompt is None]
                for conversation in finished:
                    result = conversation.result()
                    out.write(json.dumps(result, ensure_ascii=False) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                    report.written += 1
                    bar.update(1)
                asking = [(c, prompt) for c, prompt in prompts if prompt is not None]
                replies = backend.complete([prompt for _, prompt in asking]) if asking else []
                active = []
                for (conversation, _), reply in zip(asking, replies, strict=True):
                    if isinstance(reply, Exception):
                        report.failed[f"{options.input}:{conversation.line}"] = f"{type(reply).__name__}: {reply}"
                        bar.update(1)
                    else:
                        conversation.accept(reply)
                        active.append(conversation)
    return report


@dataclass
class GenerationOptions:
    """Sampling settings shared by both backends; temperature 0 means greedy."""

    max_new_tokens: int = 2048
    temperature: float = 0.0
    top_p: float = 1.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be positive, got "
                             f"{self.max_new_tokens} and {self.batch_size}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature} and {self.top_p}")


_HARMONY_MESSAGE = re.compile(
    r"<\|channel\|>(?P<channel>\w+)[^<]*(?:<\|constrain\|>[^<]*)?<\|message\|>(?P<text>.*?)"
    r"(?:<\|end\|>|<\|return\|>|<\|call\|>|$)", re.S)


def parse_harmony(text: str) -> Reply:
    """gpt-oss output (``<|channel|>analysis<|message|>...<|end|><|start|>assistant<|channel|>final...``):
    analysis becomes the reasoning, final the content; commentary (tool calls) is dropped."""
    parts: dict[str, list[str]] = {}
    for match in _HARMONY_MESSAGE.finditer(text):
        parts.setdefault(match["channel"], []).append(match["text"])
    reasoning = "\n".join(parts.get("analysis", [])) or None
    return Reply(content="\n".join(parts.get("final", [])), reasoning_content=reasoning)


class LocalBackend:
    """Hugging Face ``generate`` on the local target, batched with left padding."""

    def __init__(self, model: Any, tokenizer: Any, generation: GenerationOptions):
        self.model, self.tokenizer, self.generation = model, tokenizer, generation
        self.batch_size = generation.batch_size
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError("the tokenizer has neither a pad nor an eos token to pad batches with")
            tokenizer.pad_token = tokenizer.eos_token
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; regeneration renders prompts with it")
        eos = model.generation_config.eos_token_id
        eos = tokenizer.eos_token_id if eos is None else eos
        self.stop_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.think_end = tokenizer.convert_tokens_to_ids("</think>") if "</think>" in tokenizer.get_vocab() else None

    @classmethod
    def from_pretrained(cls, target: str | os.PathLike, generation: GenerationOptions,
                        load: TargetLoadOptions | None = None, tokenizer: str | os.PathLike | None = None
                        ) -> LocalBackend:
        """The target through :class:`TargetModel` (registry check, dtype, device), its tokenizer beside it."""
        load = load or TargetLoadOptions()
        model = TargetModel.from_pretrained(target, options=load).model
        tok = AutoTokenizer.from_pretrained(os.fspath(tokenizer or target), trust_remote_code=load.trust_remote_code)
        return cls(model, tok, generation)

    def complete(self, prompts: Sequence[list[dict[str, Any]]]) -> list[Reply | Exception]:
        results: list[Reply | Exception] = []
        texts: list[str] = []
        for prompt in prompts:
            try:
                texts.append(self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))
                results.append(Reply(""))
            except Exception as error:  # a template that rejects one conversation fails that one only
                results.append(error)
        if not texts:
            return results
        replies = iter(self._generate(texts))
        return [next(replies) if isinstance(r, Reply) else r for r in results]

    def _generate(self, texts: list[str]) -> list[Reply]:
        g = self.generation
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        sampling = dict(do_sample=True, temperature=g.temperature, top_p=g.top_p) if g.temperature > 0 else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            output = self.model.generate(**batch, max_new_tokens=g.max_new_tokens,
                                         pad_token_id=self.tokenizer.pad_token_id, **sampling)
        return [self.reply_from_tokens(row.tolist()) for row in output[:, batch["input_ids"].shape[1]:]]

    def reply_from_tokens(self, tokens: list[int]) -> Reply:
        """New tokens up to the first stop token, split into reasoning and answer by the target's format."""
        stop = next((i for i, t in enumerate(tokens) if t in self.stop_ids), len(tokens))
        tokens = tokens[:stop]
        raw = self.tokenizer.decode(tokens, skip_special_tokens=False)
        if raw.lstrip().startswith("<|channel|>"):
            return parse_harmony(raw)
        if self.think_end is not None and self.think_end in tokens:
            cut = tokens.index(self.think_end)
            reasoning = self.tokenizer.decode(tokens[:cut], skip_special_tokens=True).replace("<think>", "").strip()
            content = self.tokenizer.decode(tokens[cut + 1:], skip_special_tokens=True).strip()
            return Reply(content, reasoning or None)
        return Reply(self.tokenizer.decode(tokens, skip_special_tokens=True))


class HttpBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint (vLLM, SGLang, ...), requests in a thread pool.

    Uses only the standard library. Rate limits (429), server errors and dropped
    connections are retried with backoff; other errors fail the conversation alone.
    """

    def __init__(self, endpoint: str, model: str, generation: GenerationOptions, concurrency: int = 8,
                 timeout: float = 600.0, retries: int = 3, api_key: str | None = None):
        if concurrency < 1:
            raise ValueError(f"concurrency must be positive, got {concurrency}")
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model, self.generation, self.timeout, self.retries = model, generation, timeout, retries
        self.batch_size = generation.batch_size
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.pool = ThreadPoolExecutor(max_workers=concurrency)

    def complete(self, prompts: Sequence[list[dict[str, Any]]]) -> list[Reply | Exception]:
        return list(self.pool.map(self._one, prompts))

    def close(self) -> None:
        self.pool.shutdown()

    def _one(self, messages: list[dict[str, Any]]) -> Reply | Exception:
        g = self.generation
        body = json.dumps({"model": self.model, "messages": messages, "max_tokens": g.max_new_tokens,
                           "temperature": g.temperature, "top_p": g.top_p}).encode()
        for attempt in range(self.retries + 1):
            try:
                request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    message = json.loads(response.read())["choices"][0]["message"]
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                return Reply(message.get("content") or "", reasoning or None)
            except urllib.error.HTTPError as error:
                detail = error.read()[:300].decode("utf-8", "replace")
                failure: Exception = RuntimeError(f"HTTP {error.code} from {self.url}: {detail}")
                if error.code != 429 and error.code < 500:
                    return failure
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                failure = RuntimeError(f"cannot reach {self.url}: {error}")
            except (ValueError, KeyError, IndexError, TypeError) as error:
                return RuntimeError(f"unexpected response from {self.url}: {error!r}")
            if attempt < self.retries:
                time.sleep(0.5 * 2 ** attempt)
        return failure
