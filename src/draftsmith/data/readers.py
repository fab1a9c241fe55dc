"""Reading conversation records from JSONL, JSON, Parquet files and in-memory data sets.

Each reader yields ``(location, record)`` pairs where ``location`` is ``file:line`` (JSONL and
JSON: the line the record starts on; Parquet and data sets: the 1-based row). A record that
cannot be decoded (invalid UTF-8, malformed JSON) is yielded as a :class:`RecordError` in
place of the record, so the caller counts it and reading goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Union

from draftsmith.data.conversation import Conversation, RecordError, parse_conversation
from draftsmith.data.report import DataReport

Source = Union[str, Path, Iterable[Mapping[str, Any]]]

JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSON_SUFFIXES = (".json",)
PARQUET_SUFFIXES = (".parquet", ".pq")


class MissingExtraError(ImportError, ValueError):
    """An optional dependency is needed for this input; the message names the pip extra."""


def iter_records(source: Source) -> Iterator[tuple[str, Any]]:
    """Raw records of one source, each with its location; decode failures come as RecordError."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        suffix = path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            yield from _jsonl(path)
        elif suffix in JSON_SUFFIXES:
            yield from _json(path)
        elif suffix in PARQUET_SUFFIXES:
            yield from _parquet(path)
        else:
            raise ValueError(
                f"{path}: unsupported data file type {suffix!r}; expected "
                f"{', '.join(JSONL_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES)}"
            )
    elif type(source).__name__ in ("DatasetDict", "IterableDatasetDict"):
        raise ValueError(f"pass one split of the data set (e.g. dataset['train']), not the whole {type(source).__name__}")
    elif isinstance(source, Iterable) and not isinstance(source, (bytes, Mapping)):
        name = _dataset_name(source)
        for row, record in enumerate(source, 1):
            yield f"{name}:{row}", record
    else:
        raise ValueError(f"unsupported data source {type(source).__name__}: pass file paths or an iterable of records")


def iter_conversations(sources: Source | list[Source], report: DataReport) -> Iterator[Conversation]:
    """Normalized conversations from all sources, in order; bad records go to ``report``."""
    for source in as_source_list(sources):
        for location, record in iter_records(source):
            report.count_record()
            try:
                if isinstance(record, RecordError):
                    raise record
                yield parse_conversation(record, location)
            except RecordError as error:
                report.skip(error.reason, location, error.detail)


def load_conversations(
    sources: Source | list[Source], max_bad_fraction: float = 0.01
) -> tuple[list[Conversation], DataReport]:
    """Read and normalize every conversation; raise ``BadRecordError`` past ``max_bad_fraction``."""
    report = DataReport()
    conversations = list(iter_conversations(sources, report))
    report.check(max_bad_fraction)
    return conversations, report


def as_source_list(sources: Source | list[Source]) -> list[Source]:
    """A single path or data set, or a list of them (a list of records is one source)."""
    if isinstance(sources, (str, Path)) or is_hf_dataset(sources):
        return [sources]
    if isinstance(sources, Mapping):  # one record
        return [[sources]]
    sources = list(sources)
    if sources and all(isinstance(s, Mapping) for s in sources):
        return [sources]
    return sources


def is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "datasets"


def _dataset_name(obj: Any) -> str:
    if isinstance(obj, (list, tuple)):
        return "<records>"
    info = getattr(obj, "info", None)
    name = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)
    return f"<dataset {name}>" if name else f"<{type(obj).__name__}>"


def _jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, 1):
            location = f"{path}:{line_number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield location, RecordError("invalid_utf8", f"byte {error.start} is not UTF-8")
                continue
            if not line.strip():
                continue
            try:
                yield location, json.loads(line)
            except json.JSONDecodeError as error:
                yield location, RecordError("malformed_json", f"{error.msg} at column {error.colno}")


def _json(path: Path) -> Iterator[tuple[str, Any]]:
    """A JSON array of records, one JSON object, or JSON Lines saved under ``.json``.

    An array is decoded element by element so each record keeps the line it starts on; a
    file that is not valid JSON as a whole cannot be split into records and is an error.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 (byte {error.start}); a .json file must be valid as a whole") from None
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] != "[":
        try:
            yield f"{path}:{text.count(chr(10), 0, start) + 1}", json.loads(text)
        except json.JSONDecodeError:
            yield from _jsonl(path)
        return
    decoder = json.JSONDecoder()
    position = start + 1
    while True:
        position = _skip_space(text, position)
        if text.startswith("]", position):
            break
        line = text.count("\n", 0, position) + 1
        try:
            record, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{error.lineno}: malformed JSON array ({error.msg}); fix the file or save it as JSONL") from None
        yield f"{path}:{line}", record
        position = _skip_space(text, position)
        if text.startswith(",", position):
            position += 1
        elif not text.startswith("]", position):
            line = text.count("\n", 0, position) + 1
            raise ValueError(f"{path}:{line}: malformed JSON array (expected ',' or ']')")


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _parquet(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError(
            f"{path}: reading Parquet needs pyarrow; install it with: pip install draftsmith[parquet]"
        ) from None
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            row += 1
            yield f"{path}:{row}", record
