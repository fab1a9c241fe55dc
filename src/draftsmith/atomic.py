"""Atomic directory writes: a killed save never leaves a half directory that looks complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def refuse_overwrite(directory: str | os.PathLike, overwrite: bool) -> None:
    """Raise unless ``directory`` is absent or empty, or replacing it was asked for.

    Called before long work too, so a full run is not wasted on an output it may not write.
    """
    directory = Path(directory)
    if not overwrite and directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"{directory} exists and is not empty; refusing to replace it "
                              f"(--overwrite / overwrite=True replaces it)")


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
