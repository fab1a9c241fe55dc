"""Data path benchmark: Python lists in memory (``build_dataset``) against the on-disk sample store.

For each corpus size (synthetic chats from ``synthetic_chats.py``, rendered with the harmony
template of the tiny gpt-oss shipped with draftsmith, ``max_length`` 2048) and each path, a
fresh Python process:

1. builds the training samples: ``lists`` renders every conversation into ``Sample`` lists
   in this process; ``store`` renders into a new sample store with ``--workers`` processes;
   ``arrow`` (``--paths ... arrow``, needs ``pip install datasets``) renders the same samples with
   Hugging Face ``datasets`` (``load_dataset("json")``, ``map(num_proc=--workers)``, ids stored
   as uint16 and masks as uint8 like the store) for comparison;
2. makes one pass over all samples in a shuffled epoch order, in padded micro-batches of 8,
   as training reads them (``store``: through the ``DataLoader`` with ``--loader-workers``);
3. reports wall times, peak resident memory of the process (``VmHWM``; the store's render
   workers are reported separately, they exit after the build) and the store's disk bytes
   per token (store and arrow).

    python benchmarks/data_bench.py --sizes 10000 30000 100000 --workdir /tmp/draftsmith-data-bench
    python benchmarks/data_bench.py --sizes 30000 --paths store arrow
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

MICRO_BATCH = 8
MAX_LENGTH = 2048
PATHS = ("lists", "store", "arrow")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(path: str, data: str, cache: str, workers: int, loader_workers: int) -> dict:
    """One path, one corpus, in this process (run by the parent in a fresh subprocess)."""
    from transformers import AutoTokenizer

    from draftsmith.data import DataConfig, build_dataset, build_store
    from draftsmith.demo.run import assets
    from draftsmith.train.batches import epoch_order, rank_micro_batches
    from draftsmith.train.loader import load_batches
    from draftsmith.train.objective import TokenBatch

    tokenizer = AutoTokenizer.from_pretrained(assets() / "target")
    pad = tokenizer.pad_token_id or 0
    config = DataConfig(max_length=MAX_LENGTH)
    result: dict = {"path": path}
    start = time.perf_counter()
    if path == "lists":
        samples, _ = build_dataset(data, tokenizer, config)
    elif path == "store":
        shutil.rmtree(cache, ignore_errors=True)
        store = build_store(data, tokenizer, config, cache, num_workers=workers)
        samples = store.view()
        result["disk_bytes"] = sum(f.stat().st_size for f in store.directory.iterdir())
    else:
        shutil.rmtree(cache, ignore_errors=True)
        samples, result["disk_bytes"] = _arrow_samples(data, cache, tokenizer, config, workers)
    result["build_s"] = time.perf_counter() - start
    result["rss_after_build_mib"] = _status_kib("VmRSS") / 1024
    batches = rank_micro_batches(epoch_order(len(samples), 0, 0), MICRO_BATCH, 1, 0, 1)
    start, tokens = time.perf_counter(), 0
    if path == "lists":
        for batch in batches:
            tokens += TokenBatch.from_samples([samples[i] for i in batch], pad).real_tokens
    else:
        for _, batch in load_batches(samples, batches, pad, loader_workers):
            tokens += batch.real_tokens
    result["pass_s"] = time.perf_counter() - start
    result.update(samples=len(samples), tokens=tokens, peak_rss_mib=_status_kib("VmHWM") / 1024,
                  rss_anon_mib=_status_kib("RssAnon") / 1024, rss_file_mib=_status_kib("RssFile") / 1024,
                  workers_peak_rss_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    if "disk_bytes" in result:
        result["disk_bytes_per_token"] = result["disk_bytes"] / max(1, tokens)
    return result


def _arrow_render(record: dict, tokenizer, config) -> dict:
    """One conversation to ids and mask, as the store's workers do (a bad record becomes an empty row)."""
    from draftsmith.data import DataReport, RecordError, parse_conversation
    from draftsmith.data.dataset import fit_samples

    try:
        fitted = list(fit_samples([parse_conversation(record)], tokenizer, config, DataReport()))
    except RecordError:
        fitted = []
    sample = fitted[0] if fitted else None
    return {"input_ids": sample.input_ids if sample else [], "loss_mask": sample.loss_mask if sample else []}


class _ArrowSamples(Sequence):
    """Random access to the rendered Arrow rows as samples (what the loader reads)."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        from draftsmith.data import Sample

        row = self.rows[index]
        return Sample.single(row["input_ids"], row["loss_mask"], str(index))


def _arrow_samples(data: str, cache: str, tokenizer, config, workers: int) -> tuple[_ArrowSamples, int]:
    """The samples through Hugging Face ``datasets``, and the bytes of the rendered Arrow files."""
    from functools import partial

    import datasets

    datasets.disable_progress_bars()
    raw = datasets.load_dataset("json", data_files=data, split="train", cache_dir=cache)
    features = datasets.Features({"input_ids": datasets.List(datasets.Value("uint16")),
                                  "loss_mask": datasets.List(datasets.Value("uint8"))})
    rendered = raw.map(partial(_arrow_render, tokenizer=tokenizer, config=config), features=features,
                       remove_columns=raw.column_names, num_proc=workers if workers > 1 else None)
    return _ArrowSamples(rendered), sum(os.path.getsize(f["filename"]) for f in rendered.cache_files)


def run_case(path: str, data: Path, workdir: Path, workers: int, loader_workers: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", path, "--data", str(data),
               "--cache", str(workdir / "cache"), "--workers", str(workers), "--loader-workers", str(loader_workers)]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{path} on {data} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| conversations | path | build (s) | one pass (s) | samples/s in the pass | peak RSS (MiB) | "
             "render workers' peak RSS (MiB) | disk (B/token) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        workers = f"{r['workers_peak_rss_mib']:.0f}" if r["path"] != "lists" else "–"
        disk = f"{r['disk_bytes_per_token']:.2f}" if r["path"] != "lists" else "–"
        lines.append(f"| {r['conversations']:,} | {r['path']} | {r['build_s']:.1f} | {r['pass_s']:.1f} | "
                     f"{r['samples'] / r['pass_s']:,.0f} | {r['peak_rss_mib']:.0f} | {workers} | {disk} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--workdir", default="/tmp/draftsmith-data-bench")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="store render processes")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader processes in the pass")
    parser.add_argument("--paths", nargs="+", default=["lists", "store"], choices=PATHS)
    parser.add_argument("--measure", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.data, args.cache, args.workers, args.loader_workers)))
        return
    from synthetic_chats import write_chats

    workdir = Path(args.workdir)
    rows = []
    for size in args.sizes:
        data = workdir / f"chats-{size}.jsonl"
        if not data.is_file():
            write_chats(data, size)
        for path in args.paths:
            row = dict(run_case(path, data, workdir, args.workers, args.loader_workers), conversations=size)
            rows.append(row)
            print(json.dumps(row), flush=True)
    (workdir / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
