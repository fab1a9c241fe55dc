"""A compact on-disk store of tokenized conversations: rendered once, in parallel, read by offset.

Why: as Python lists a 2,048-token sample costs about 189 KB (every int a boxed object), so
a 300K-conversation corpus does not fit in memory, and each rank and each pass (vocabulary,
training) rendered it again. The store holds every conversation after the length policy as
flat arrays, written once per tokenizer, data and settings, and read by every rank and epoch
at random. Offsets and sources are memory-mapped (16 bytes and a ``file:line`` per sample);
token arrays are read with ``pread``, through the same OS page cache shared by all ranks,
because mapped pages that a pass has touched count as each rank's resident memory and would
grow it with the corpus (3 bytes per token of the corpus, per rank):

- ``input_ids.bin``: all token ids back to back, ``uint16`` when the tokenizer has at most
  65,536 tokens, else ``int32``;
- ``loss_mask.bin``: ``uint8``, 1 on assistant tokens;
- ``offsets.bin``: ``int64 [n + 1]``, sample ``i`` is ``[offsets[i], offsets[i + 1])``;
- ``sources.bin`` and ``source_offsets.bin``: each sample's ``file:line`` (UTF-8);
- ``meta.json``: format, key, dtype, counts, content digest and the data report of the build.

A store lives in ``CACHE_DIR/<key>`` where the key hashes the tokenizer, the data files'
bytes and the render and length settings (:func:`store_key`); any change makes a new store.
It is staged in a hidden sibling and renamed into place (:func:`draftsmith.atomic.shared_cache_directory`),
so a store that exists is complete. Packing is not part of the key: it is applied when
reading (:meth:`SampleStore.view`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from draftsmith.atomic import shared_cache_directory
from draftsmith.data.conversation import Conversation
from draftsmith.data.dataset import DataConfig, fit_samples
from draftsmith.data.fingerprint import data_fingerprint, settings_fingerprint, tokenizer_fingerprint
from draftsmith.data.readers import Source, iter_conversations
from draftsmith.data.render import check_chat_template
from draftsmith.data.report import DataReport
from draftsmith.data.samples import Sample, concatenate, pack_starts

log = logging.getLogger(__name__)

FORMAT = "draftsmith-samples/1"
META = "meta.json"
CHUNK = 256  # conversations per worker task: large enough to amortize pickling, small enough to keep order cheap
# The first chunks (4,096 conversations) render in this process, the rest in worker processes:
# spawning workers costs seconds (each imports torch and transformers), more than they save on
# small data, and holding chunks back to decide would cost memory.
IN_PROCESS_CHUNKS = 16
COUNT_CHUNK = 1 << 22  # tokens per bincount pass, so counting never holds the whole store in memory


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/draftsmith/data``, else ``~/.cache/draftsmith/data``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "draftsmith" / "data"


def default_num_workers() -> int:
    """Rendering is CPU-bound jinja and tokenization: one process per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def store_key(sources: Source | list[Source], tokenizer: Any, config: DataConfig) -> dict[str, str]:
    """What a store was built from: the tokenizer, the data bytes and the render/length settings."""
    return {
        "format": FORMAT,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "data_fingerprint": data_fingerprint(sources),
        "render_fingerprint": settings_fingerprint(config.fingerprint_fields()),
    }


def token_dtype(tokenizer: Any) -> np.dtype:
    return np.dtype(np.uint16) if len(tokenizer) <= 1 << 16 else np.dtype(np.int32)


class SampleStore:
    """One built store: random access to single-conversation samples.

    Pickles as its directory, so ``DataLoader`` workers reopen it instead of copying it.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        meta_path = self.directory / META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing; {self.directory} is not a draftsmith sample store")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
        self.report = DataReport.from_dict(self.meta["report"])
        self.dtype = np.dtype(self.meta["dtype"])
        self.offsets = self._map("offsets.bin", np.dtype(np.int64))
        self._sources = self._map("sources.bin", np.dtype(np.uint8))
        self._source_offsets = self._map("source_offsets.bin", np.dtype(np.int64))
        self._files = {name: os.open(self.directory / name, os.O_RDONLY) for name in ("input_ids.bin", "loss_mask.bin")}
        weakref.finalize(self, _close, list(self._files.values()))

    def _map(self, name: str, dtype: np.dtype) -> np.ndarray:
        path = self.directory / name
        if path.stat().st_size == 0:  # an empty file cannot be mapped
            return np.zeros(0, dtype)
        return np.memmap(path, dtype=dtype, mode="r")

    def _read(self, name: str, dtype: np.dtype, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` of a token file, read (not mapped) so that a pass over the store
        leaves its pages in the shared page cache instead of in this process's resident memory."""
        raw = os.pread(self._files[name], (stop - start) * dtype.itemsize, start * dtype.itemsize)
        return np.frombuffer(raw, dtype)

    def input_ids(self, start: int, stop: int) -> np.ndarray:
        return self._read("input_ids.bin", self.dtype, start, stop)

    def loss_mask(self, start: int, stop: int) -> np.ndarray:
        return self._read("loss_mask.bin", np.dtype(np.uint8), start, stop)

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def key(self) -> dict[str, str]:
        return dict(self.meta["key"])

    @property
    def digest(self) -> str:
        """sha256 of the stored ids, masks and lengths, in order (what a resumed run must see again)."""
        return self.meta["digest"]

    def source(self, index: int) -> str:
        start, stop = self._source_offsets[index], self._source_offsets[index + 1]
        return bytes(self._sources[start:stop]).decode("utf-8")

    def sample(self, index: int) -> Sample:
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return Sample.single(self.input_ids(start, stop).tolist(), self.loss_mask(start, stop).tolist(),
                             self.source(index))

    def token_counts(self, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(supervised, seen)`` int64 counts per token id, a bounded chunk of the store at a time."""
        supervised = np.zeros(vocab_size, np.int64)
        seen = np.zeros(vocab_size, np.int64)
        for start in range(0, self.num_tokens, COUNT_CHUNK):
            stop = min(start + COUNT_CHUNK, self.num_tokens)
            ids, mask = self.input_ids(start, stop), self.loss_mask(start, stop).astype(bool)
            top = int(ids.max())
            if top >= vocab_size:
                where = start + int(np.argmax(ids >= vocab_size))
                sample = int(np.searchsorted(self.offsets, where, side="right")) - 1
                raise ValueError(f"{self.source(sample)}: the tokenizer produced token id {top}, outside the target "
                                 f"vocabulary of {vocab_size}; tokenizer and target do not match")
            seen += np.bincount(ids, minlength=vocab_size)
            supervised += np.bincount(ids[mask], minlength=vocab_size)
        return supervised, seen

    def view(self, pack: bool = False, max_length: int | None = None) -> StoreView:
        """Every sample in store order; with ``pack``, consecutive samples next-fit into ``max_length``."""
        indices = np.arange(len(self), dtype=np.int64)
        if not pack:
            return StoreView(self, indices, np.arange(len(self) + 1, dtype=np.int64))
        if max_length is None:
            raise ValueError("packing needs max_length")
        starts = pack_starts(self.lengths.tolist(), max_length, self.source)
        return StoreView(self, indices, np.asarray(starts + [len(self)], dtype=np.int64))


def _close(handles: list[int]) -> None:
    for handle in handles:
        os.close(handle)


class StoreView(Sequence[Sample]):
    """An ordered selection of (packed) store samples: item ``k`` concatenates the store samples
    ``indices[bounds[k]:bounds[k + 1]]`` as separate documents. Holds only index arrays."""

    def __init__(self, store: SampleStore, indices: np.ndarray, bounds: np.ndarray):
        self.store, self.indices, self.bounds = store, indices, bounds

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, item: int) -> Sample:  # type: ignore[override]
        if not -len(self) <= item < len(self):
            raise IndexError(f"sample {item} of {len(self)}")
        item %= len(self)
        members = self.indices[self.bounds[item]:self.bounds[item + 1]]
        if len(members) == 1:
            return self.store.sample(int(members[0]))
        return concatenate([self.store.sample(int(i)) for i in members])

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per item (a packed item: the sum of its documents)."""
        per_sample = np.diff(self.store.offsets)[self.indices]
        return np.add.reduceat(per_sample, self.bounds[:-1]) if len(self) else np.zeros(0, np.int64)

    def select(self, positions: Sequence[int]) -> StoreView:
        """The items at ``positions``, in that order."""
        parts = [self.indices[self.bounds[p]:self.bounds[p + 1]] for p in positions]
        sizes = [len(p) for p in parts]
        indices = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return StoreView(self.store, indices, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))

    def fingerprint(self) -> str:
        """sha256 of the store's content digest and this view's layout: equal iff the samples are."""
        digest = hashlib.sha256(self.store.digest.encode())
        digest.update(self.indices.astype(np.int64).tobytes())
        digest.update(b"|")
        digest.update(self.bounds.astype(np.int64).tobytes())
        return digest.hexdigest()


@dataclass
class _Chunk:
    """One worker's rendered share: flat arrays and the report of what it skipped."""

    input_ids: np.ndarray
    loss_mask: np.ndarray
    lengths: np.ndarray
    sources: list[str]
    report: DataReport


_worker: dict[str, Any] = {}


def _init_worker(tokenizer: Any, config: DataConfig, dtype: str) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one process per core already
    _worker.update(tokenizer=tokenizer, config=config, dtype=np.dtype(dtype))


def _render_in_worker(conversations: list[Conversation]) -> _Chunk:
    return _render_chunk(conversations, _worker["tokenizer"], _worker["config"], _worker["dtype"])


def _render_chunk(conversations: list[Conversation], tokenizer: Any, config: DataConfig, dtype: np.dtype) -> _Chunk:
    report = DataReport()
    samples = list(fit_samples(conversations, tokenizer, config, report))
    lengths = np.fromiter((len(s) for s in samples), np.int64, len(samples))
    ids = np.fromiter((t for s in samples for t in s.input_ids), dtype, int(lengths.sum()))
    mask = np.fromiter((m for s in samples for m in s.loss_mask), np.uint8, int(lengths.sum()))
    return _Chunk(ids, mask, lengths, [s.sources[0] for s in samples], report)


class _Writer:
    """Appends chunks to the staging files in order, hashing the content as it goes."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.files = {name: open(directory / name, "wb") for name in ("input_ids.bin", "loss_mask.bin", "sources.bin")}
        self.offsets, self.source_offsets = [0], [0]
        self.supervised = 0
        self.digests = [hashlib.sha256() for _ in range(3)]  # one stream per array: independent of chunking

    def add(self, chunk: _Chunk, report: DataReport) -> None:
        report.merge(chunk.report)
        self.files["input_ids.bin"].write(chunk.input_ids.tobytes())
        self.files["loss_mask.bin"].write(chunk.loss_mask.tobytes())
        for digest, part in zip(self.digests, (chunk.input_ids.astype(np.int64), chunk.loss_mask, chunk.lengths)):
            digest.update(part.tobytes())
        for length, source in zip(chunk.lengths.tolist(), chunk.sources):
            self.offsets.append(self.offsets[-1] + length)
            encoded = source.encode("utf-8")
            self.files["sources.bin"].write(encoded)
            self.source_offsets.append(self.source_offsets[-1] + len(encoded))
        self.supervised += int(chunk.loss_mask.sum())

    def finish(self, meta: dict[str, Any], report: DataReport) -> None:
        for handle in self.files.values():
            handle.close()
        np.asarray(self.offsets, np.int64).tofile(self.directory / "offsets.bin")
        np.asarray(self.source_offsets, np.int64).tofile(self.directory / "source_offsets.bin")
        meta = dict(meta, samples=len(self.offsets) - 1, tokens=self.offsets[-1], supervised_tokens=self.supervised,
                    digest=hashlib.sha256("".join(d.hexdigest() for d in self.digests).encode()).hexdigest(), report=report.to_dict())
        (self.directory / META).write_text(json.dumps(meta, indent=1) + "\n")  # last: its presence marks a whole store


def _chunks(conversations: Iterable[Conversation], size: int) -> Iterator[list[Conversation]]:
    iterator = iter(conversations)
    while chunk := list(islice(iterator, size)):
        yield chunk


def build_store(
    sources: Source | list[Source],
    tokenizer: Any,
    config: DataConfig = DataConfig(),
    cache_dir: str | os.PathLike | None = None,
    *,
    num_workers: int | None = None,
    progress: bool = False,
    chunk_size: int = CHUNK,
) -> SampleStore:
    """The store of ``sources`` under ``cache_dir`` (default :func:`default_cache_dir`): reused when one
    with the same key exists, else rendered once by ``num_workers`` spawned processes (default
    :func:`default_num_workers`; the first ``IN_PROCESS_CHUNKS`` chunks of ``chunk_size``
    conversations render in this process, so small data never starts a worker).

    The data report of the build is stored with it, logged, and checked against today's
    ``config.max_bad_fraction`` (``BadRecordError`` past it), for a reused store too.
    """
    key = store_key(sources, tokenizer, config)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    directory = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / name
    if (directory / META).is_file():
        store = SampleStore(directory)
        log.info("reusing the sample store %s (%d samples, %d tokens)", directory, len(store), store.num_tokens)
    else:
        check_chat_template(tokenizer, config.render)
        with shared_cache_directory(directory) as staging:
            _render_into(staging, sources, tokenizer, config, key, num_workers, progress, chunk_size)
        store = SampleStore(directory)
    report = store.report
    if report.bad or report.truncated or report.dropped_counts():
        log.warning("data report:\n%s", report.format())
    report.check(config.max_bad_fraction)
    return store


def _render_into(staging: Path, sources: Source | list[Source], tokenizer: Any, config: DataConfig,
                 key: dict[str, str], num_workers: int | None, progress: bool, chunk_size: int) -> None:
    workers = default_num_workers() if num_workers is None else num_workers
    if workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {workers}")
    dtype = token_dtype(tokenizer)
    report = DataReport()
    writer = _Writer(staging)
    conversations = tqdm(iter_conversations(sources, report), desc="rendering", unit="conv", disable=not progress)
    chunks = _chunks(conversations, chunk_size)
    for chunk in islice(chunks, IN_PROCESS_CHUNKS if workers > 1 else None):
        writer.add(_render_chunk(chunk, tokenizer, config, dtype), report)
    rest = next(chunks, None)
    if rest is not None:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                 initargs=(tokenizer, config, dtype.str)) as pool:
            pending: deque[Future[_Chunk]] = deque([pool.submit(_render_in_worker, rest)])
            for chunk in chunks:
                pending.append(pool.submit(_render_in_worker, chunk))
                if len(pending) > 2 * workers:  # bounded read-ahead: memory stays flat in corpus size
                    writer.add(pending.popleft().result(), report)
            while pending:
                writer.add(pending.popleft().result(), report)
    writer.finish({"format": FORMAT, "key": key, "dtype": dtype.str, "tokenizer_size": len(tokenizer)}, report)
