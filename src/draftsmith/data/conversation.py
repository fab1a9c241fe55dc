"""One internal form for chat records, from OpenAI ``messages`` or ShareGPT ``conversations``.

Everything downstream (rendering, masks, vocabulary) sees only :class:`Conversation`, so
each source format is handled here once. A record that cannot become a trainable
conversation raises :class:`RecordError` with a short machine-readable reason; the reader
counts it against the file and line it came from instead of failing the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool")

# OpenAI's legacy "function" role carries a tool result.
OPENAI_ROLE_ALIASES = {"function": "tool"}

# ShareGPT speakers seen in public data sets; "function_call" is an assistant tool call and
# "observation" a tool result (LLaMA-Factory / Glaive style).
SHAREGPT_ROLES = {
    "system": "system",
    "developer": "developer",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
}

REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


class RecordError(Exception):
    """A record that cannot be trained on; ``reason`` is the key it is counted under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Message:
    """One chat message. ``reasoning`` is the assistant's thinking (harmony ``analysis``)."""

    role: str
    content: str
    reasoning: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    name: str | None = None
    tool_call_id: str | None = None

    def to_template(self) -> dict[str, Any]:
        """The message as chat templates expect it.

        Reasoning is passed under both names templates read (Qwen3 ``reasoning_content``,
        gpt-oss ``thinking``); optional keys are left out when absent because templates test
        for their presence (``'thinking' in message``).
        """
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
            message["thinking"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = [json.loads(json.dumps(call)) for call in self.tool_calls]
        if self.name is not None:
            message["name"] = self.name
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


@dataclass(frozen=True)
class Conversation:
    """A normalized conversation and where it came from (``file:line`` for error reports)."""

    messages: tuple[Message, ...]
    source: str = "<memory>"
    tools: tuple[dict[str, Any], ...] | None = None

    def template_messages(self) -> list[dict[str, Any]]:
        return [m.to_template() for m in self.messages]


def parse_conversation(record: Any, source: str = "<memory>") -> Conversation:
    """Normalize one raw record (already JSON-decoded) or raise :class:`RecordError`."""
    if not isinstance(record, Mapping):
        raise RecordError("not_a_conversation", f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        raw, parse = record["messages"], _openai_message
    elif "conversations" in record:
        raw, parse = record["conversations"], _sharegpt_message
    else:
        raise RecordError("not_a_conversation", f"no 'messages' or 'conversations' field (keys: {sorted(record)})")
    if isinstance(raw, str):  # Parquet / CSV exports often store the list as a JSON string
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise RecordError("malformed_json", f"messages string is not JSON: {error.msg}") from None
    if raw is None or (isinstance(raw, (list, tuple)) and not raw):
        raise RecordError("empty_conversation")
    if not isinstance(raw, (list, tuple)):
        raise RecordError("not_a_conversation", f"messages must be a list, got {type(raw).__name__}")
    messages = [parse(m, i) for i, m in enumerate(raw)]
    system = record.get("system")
    if "conversations" in record and isinstance(system, str) and system:
        messages.insert(0, Message("system", _text(system, "system")))
    if not any(m.role == "assistant" for m in messages):
        raise RecordError("no_assistant_turn")
    if messages[0].role == "assistant":
        raise RecordError("starts_with_assistant", "an assistant turn needs a prompt before it")
    return Conversation(tuple(messages), source, _tools(record.get("tools")))


def _openai_message(raw: Any, index: int) -> Message:
    if not isinstance(raw, Mapping):
        raise RecordError("malformed_message", f"message {index} is a {type(raw).__name__}, not an object")
    role = raw.get("role")
    if role is None or role == "":
        raise RecordError("missing_role", f"message {index} has no 'role'")
    role = OPENAI_ROLE_ALIASES.get(role, role)
    if role not in ROLES:
        raise RecordError("unknown_role", f"message {index} has role {role!r}; expected one of {list(ROLES)}")
    tool_calls = _tool_calls(raw.get("tool_calls"), index) if role == "assistant" else ()
    if "content" not in raw and not tool_calls:
        raise RecordError("missing_content", f"message {index} ({role}) has no 'content'")
    content = raw.get("content")
    if content is None and not tool_calls:
        raise RecordError("missing_content", f"message {index} ({role}) has content null")
    reasoning = None
    if role == "assistant":
        for key in REASONING_KEYS:
            if raw.get(key) is not None:
                reasoning = _text(raw[key], f"message {index} {key}")
                break
    return Message(
        role,
        "" if content is None else _text(content, f"message {index} content"),
        reasoning,
        tool_calls,
        _optional_text(raw.get("name"), f"message {index} name"),
        _optional_text(raw.get("tool_call_id"), f"message {index} tool_call_id"),
    )


def _sharegpt_message(raw: Any, index: int) -> Message:
    if not isinstance(raw, Mapping):
        raise RecordError("malformed_message", f"turn {index} is a {type(raw).__name__}, not an object")
    speaker = raw.get("from", raw.get("role"))
    if speaker is None or speaker == "":
        raise RecordError("missing_role", f"turn {index} has no 'from'")
    role = SHAREGPT_ROLES.get(str(speaker).lower())
    if role is None:
        raise RecordError("unknown_role", f"turn {index} is from {speaker!r}; expected one of {sorted(SHAREGPT_ROLES)}")
    if "value" not in raw or raw["value"] is None:
        raise RecordError("missing_content", f"turn {index} ({speaker}) has no 'value'")
    value = _text(raw["value"], f"turn {index} value")
    if speaker == "function_call":
        try:
            call = json.loads(value)
        except json.JSONDecodeError as error:
            raise RecordError("bad_tool_call", f"turn {index} function_call is not JSON: {error.msg}") from None
        return Message("assistant", "", tool_calls=_tool_calls([call], index))
    return Message(role, value)


def _text(value: Any, where: str) -> str:
    """Text content: a string, or OpenAI content parts that are all text."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple)) and all(
        isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value
    ):
        text = "".join(p["text"] for p in value)
    else:
        kinds = sorted({str(p.get("type")) for p in value if isinstance(p, Mapping)}) if isinstance(value, list) else []
        shown = f"parts of type {kinds}" if kinds else type(value).__name__
        raise RecordError("non_text_content", f"{where} is {shown}, not text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RecordError("invalid_utf8", f"{where} holds a lone surrogate at character {error.start}") from None
    return text


def _optional_text(value: Any, where: str) -> str | None:
    return None if value is None else _text(value, where)


def _tool_calls(raw: Any, index: int) -> tuple[dict[str, Any], ...]:
    """Tool calls as ``{"type": "function", "function": {"name", "arguments": dict}}``.

    Hugging Face chat templates expect ``arguments`` as a mapping (they ``tojson`` it), while
    OpenAI data stores a JSON string: strings are decoded here, once.
    """
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise RecordError("bad_tool_call", f"message {index} tool_calls is a {type(raw).__name__}, not a list")
    calls = []
    for k, call in enumerate(raw):
        function = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise RecordError("bad_tool_call", f"message {index} tool call {k} has no function name")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as error:
                raise RecordError("bad_tool_call", f"message {index} tool call {k} arguments: {error.msg}") from None
        if not isinstance(arguments, Mapping):
            raise RecordError("bad_tool_call", f"message {index} tool call {k} arguments must be a JSON object")
        normalized: dict[str, Any] = {"type": "function", "function": {"name": function["name"], "arguments": dict(arguments)}}
        if isinstance(call, Mapping) and isinstance(call.get("id"), str):
            normalized["id"] = call["id"]
        calls.append(normalized)
    return tuple(calls)


def _tools(raw: Any) -> tuple[dict[str, Any], ...] | None:
    if isinstance(raw, str) and raw.strip():
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise RecordError("bad_tool_call", f"'tools' is not JSON: {error.msg}") from None
    if not raw:
        return None
    if not isinstance(raw, (list, tuple)) or not all(isinstance(t, Mapping) for t in raw):
        raise RecordError("bad_tool_call", "'tools' must be a list of tool definitions")
    return tuple(dict(t) for t in raw)
