"""Content fingerprints that decide whether a cached draft vocabulary or sample store is still valid.

A vocabulary built from other data or another tokenizer looks exactly like a valid one, so
the cache key is a hash of what produced it: the tokenizer (its full ``tokenizer.json``,
special tokens and chat template) and the data (file bytes, not names or times, plus the
settings that change which tokens are supervised).
"""

from __future__ import annotations

import hashlib
from array import array
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from draftsmith.data.readers import Source, as_source_list, is_hf_dataset

CHUNK = 1 << 20


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's vocabulary and merges, special tokens and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256(body.encode("utf-8"))
    extra = {
        "added": sorted((i, t.content, bool(t.special)) for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()),
        "special": sorted(getattr(tokenizer, "all_special_tokens", [])),
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """sha256 of settings (JSON, sorted keys): the render and length settings part of a sample-store key."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def data_fingerprint(sources: Source | list[Source], settings: Mapping[str, Any] | None = None) -> str:
    """sha256 over every source's content, in order, and the ``settings`` that shape supervision."""
    digest = hashlib.sha256(json.dumps(settings or {}, sort_keys=True, default=str).encode("utf-8"))
    for source in as_source_list(sources):
        digest.update(b"\x00source\x00")
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"data file not found: {path}")
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        elif is_hf_dataset(source) and getattr(source, "_fingerprint", None):
            digest.update(str(source._fingerprint).encode("utf-8"))
        else:
            for record in source:
                digest.update(json.dumps(record, sort_keys=True, default=str).encode("utf-8") + b"\n")
    return digest.hexdigest()


def samples_fingerprint(samples: list[Any]) -> str:
    """sha256 of the token ids, loss masks and document layout of tokenized samples, in order.

    A resumed training run must see exactly the samples it was interrupted on.
    """
    digest = hashlib.sha256()
    for sample in samples:
        for values in (sample.input_ids, sample.loss_mask, sample.document_ids):
            digest.update(array("q", values).tobytes())
        digest.update(b"|")
    return digest.hexdigest()
