"""Atomic writes and refusing to overwrite: a killed save never leaves a half file or directory that looks complete.

Every writer in draftsmith that produces a file or directory a later step trusts
(checkpoints, vocabulary files, features, the demo) goes through these two functions.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def refuse_overwrite(path: str | os.PathLike, overwrite: bool) -> None:
    """Raise unless ``path`` is absent or an empty directory, or replacing it was asked for.

    Called before long work too, so a full run is not wasted on an output it may not write.
    """
    path = Path(path)
    if not overwrite and path.exists() and (not path.is_dir() or any(path.iterdir())):
        what = "is not empty" if path.is_dir() else "exists"
        raise FileExistsError(f"{path} {what}; refusing to replace it (--overwrite / overwrite=True replaces it)")


@contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging path that replaces ``path`` once the block succeeds (same rules as :func:`atomic_directory`)."""
    path = Path(path)
    refuse_overwrite(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(handle)
    try:
        yield Path(staging)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(directory: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``directory`` once the block succeeds.

    The staging directory is a hidden sibling (same file system, so the final rename is
    atomic); on any error it is removed and ``directory`` is untouched. An existing
    non-empty ``directory`` is replaced only with ``overwrite``, and only after the new
    one is complete.
    """
    directory = Path(directory)
    refuse_overwrite(directory, overwrite)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        yield staging
        if directory.exists():
            retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            directory.rename(retired)
            staging.rename(directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def shared_cache_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging directory published as ``directory`` once the block succeeds; first writer wins.

    For content-keyed caches that several processes (ranks, nodes, two runs) may build at
    once: each stages its own copy, the first to finish renames it into place, and a later
    one finding ``directory`` already there discards its copy and keeps the published one,
    which readers may have memory-mapped already. On error the staging directory is removed.
    A process killed mid-build leaves its ``.NAME.tmp-*`` sibling behind (never read).
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        yield staging
        try:
            staging.rename(directory)
        except OSError:
            if not directory.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes, *, overwrite: bool = False) -> Path:
    """Write a file through a temporary sibling renamed into place; refuse an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to replace it (--overwrite / overwrite=True replaces it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return path
