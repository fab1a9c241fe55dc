#!/usr/bin/env bash
# The GPU check: everything draftsmith runs on CUDA, in one go, on a machine with one CUDA GPU.
#
#   benchmarks/gpu_check.sh [--out DIR]      # the check (under 8 minutes on one H100/H200-class GPU)
#   benchmarks/gpu_check.sh --dry-run        # this script's own plumbing, on a CPU, in seconds
#
# Stages, each with its own time limit and log under DIR (default gpu_check_out/):
#   install  pip install --no-deps --no-build-isolation -e .   (the machine's own torch and
#            transformers, no network); if that fails, the sources run from src/ instead
#   tests    pytest -m cuda: the lean TTT attention on CUDA against the float64 reference
#            (values and gradients, fp32 and bf16 autocast, causal and packed documents,
#            GQA, up to 4,096 tokens) and the whole draft on CUDA against the CPU
#   demo     draftsmith demo --quick (its CPU path), then a bf16 (autocast) training run of
#            examples/tiny-gpt-oss.yaml, the demo recipe, on CUDA
#   ttt_step benchmarks/ttt_step.py --device cuda at 4K, 16K and 32K tokens: lean vs NeMo
#            AutoModel when nemo_automodel is importable; fp32 and bf16, gpt-oss-shaped and
#            attention-heavy drafts; tokens/s, MFU against the GPU's measured matmul peak, memory
# and writes DIR/summary.md: the environment, each stage's verdict and time, and the tables.
# Exit status: 0 when every stage passed.
#
# --dry-run runs the same stages on the CPU at toy sizes, without installing anything: the
# files exist, the package imports (which checks the fused-attention ops' signatures), pytest
# selects the cuda tests (and skips them), ttt_step.py parses its arguments and reports MFU,
# and the demo trains one step. tests/test_benchmarks.py runs it.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
DRY_RUN=0
OUT="$REPO/gpu_check_out"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
SUMMARY="$OUT/summary.md"
cd "$REPO" || exit 2
export REPO PYTHON DRY_RUN OUT WORK

DEADLINE=$(( $(date +%s) + 450 ))  # the whole check stays under 8 minutes: stages share 7.5

# stage NAME LIMIT_SECONDS FUNCTION [HELPER_FUNCTIONS...]: run FUNCTION with a time limit (its own, or
# what is left of the check's), log to $OUT/NAME.log, record the verdict
stage() {
    local name="$1" limit="$2" start rc verdict
    shift 2
    start=$(date +%s)
    [ $(( DEADLINE - start )) -lt "$limit" ] && limit=$(( DEADLINE - start ))
    if [ "$limit" -le 0 ]; then
        printf '| %s | SKIPPED (the check ran out of time) | 0s |\n' "$name" >"$WORK/verdict.$name"
        return 1
    fi
    # the stage functions run in a child bash (timeout cannot run a function): export them and their inputs
    timeout --kill-after=10 "$limit" bash -c "set -uo pipefail; $(declare -f "$@"); $1" >"$OUT/$name.log" 2>&1
    rc=$?
    case $rc in
        0) verdict=PASS ;;
        124|137) verdict="FAIL (over its ${limit}s limit)" ;;
        *) verdict="FAIL (exit $rc)" ;;
    esac
    printf '| %s | %s | %ss |\n' "$name" "$verdict" "$(( $(date +%s) - start ))" >"$WORK/verdict.$name"
    echo "[gpu_check] $name: $verdict" >&2
    return $rc
}

log_tail() {  # the last lines of a stage's log, fenced, for the summary
    printf '\n### %s\n\n```\n' "$1"
    tail -n "${2:-40}" "$OUT/$1.log" 2>/dev/null
    printf '```\n'
}

# A dry run has nothing to time, so its three independent stages run side by side.
maybe_parallel() {
    if [ "$DRY_RUN" = 1 ]; then stage "$@" & else stage "$@"; fi
}

# ---------------------------------------------------------------------------------- install
run_check_files() {
    local missing=0 f
    for f in pyproject.toml src/draftsmith/model/attention.py tests/test_attention_cuda.py \
             benchmarks/ttt_step.py examples/tiny-gpt-oss.yaml; do
        [ -f "$f" ] || { echo "missing: $f"; missing=1; }
    done
    grep -q '^    "cuda:' pyproject.toml || { echo "pyproject.toml registers no 'cuda' pytest marker"; missing=1; }
    "$PYTHON" -m pip --version || missing=1
    return $missing
}
run_install() {
    run_check_files || return 1
    if [ "$DRY_RUN" = 1 ]; then
        echo "dry run: would run $PYTHON -m pip install --no-deps --no-build-isolation -e ."
        return 0
    fi
    "$PYTHON" -m pip install --no-deps --no-build-isolation -e .
}
if ! stage install 60 run_install run_check_files || [ "$DRY_RUN" = 1 ]; then
    export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
    [ "$DRY_RUN" = 1 ] || echo "[gpu_check] install failed: running from $REPO/src instead" >&2
fi

run_environment() {
    "$PYTHON" - <<'EOF'
import platform, torch
import draftsmith, draftsmith.model.attention  # the import checks the fused-attention ops' signatures
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"draftsmith {draftsmith.__version__} from {draftsmith.__file__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, "
          f"{torch.cuda.device_count()} visible")
else:
    print("GPU: none (CUDA not available)")
try:
    import nemo_automodel
    print(f"nemo_automodel {getattr(nemo_automodel, '__version__', '?')}")
except Exception as e:
    print(f"nemo_automodel: not importable ({type(e).__name__})")
EOF
}
stage environment 45 run_environment
if [ "$DRY_RUN" = 0 ] && { grep -q "^GPU: none" "$OUT/environment.log" || ! grep -q "^GPU: " "$OUT/environment.log"; }; then
    echo "[gpu_check] no CUDA GPU visible: the stages below would only skip; use --dry-run on a CPU" >&2
    printf '| gpu | FAIL (no CUDA GPU visible) | 0s |\n' >"$WORK/verdict.gpu"
fi

# ---------------------------------------------------------------------------------- tests
run_cuda_tests() {
    "$PYTHON" -m pytest -m cuda tests/ -q -p no:cacheprovider -rfEs --junitxml="$OUT/cuda_tests.xml" || return 1
    # the marker must select the CUDA tests: a registration or skip mistake would select none
    "$PYTHON" - "$OUT/cuda_tests.xml" "$DRY_RUN" <<'EOF'
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
total, skipped = int(suite.get("tests")), int(suite.get("skipped"))
print(f"cuda tests selected: {total}, skipped: {skipped}")
if total < 10:
    sys.exit("pytest -m cuda selected fewer than 10 tests")
if sys.argv[2] == "0" and skipped:
    sys.exit(f"{skipped} cuda tests skipped on a GPU machine")
EOF
}
maybe_parallel cuda_tests 120 run_cuda_tests

# ---------------------------------------------------------------------------------- demo
run_demo() {
    local device=cuda steps=()
    if [ "$DRY_RUN" = 1 ]; then
        device=cpu steps=(--set training.max_steps=1 --set training.micro_batch_size=2 --set data.max_length=128)
    fi
    "$PYTHON" -m draftsmith demo --quick --no-progress --out "$WORK/demo" || return 1
    "$PYTHON" -m draftsmith train examples/tiny-gpt-oss.yaml --no-progress \
        --set training.output_dir="$WORK/run" --set draft.vocab_file="$WORK/vocab.safetensors" \
        --set target.device=$device --set target.dtype=bfloat16 --set training.bf16=true "${steps[@]}" || return 1
    "$PYTHON" - "$WORK/run/metrics.jsonl" <<'EOF'
import json, math, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
train = [r for r in rows if r["split"] == "train"]
final = [r for r in rows if r["split"] == "validation"] or train
bad = [r["step"] for r in train if not math.isfinite(r["loss"])]
print(f"demo training: {train[-1]['step']} steps; train loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}; "
      f"tau_sim {train[0]['tau_sim']:.2f} -> {final[-1]['tau_sim']:.2f} ({final[-1]['split']}); "
      f"{train[-1]['tokens_per_s']:,.0f} tokens/s")
if bad:
    sys.exit(f"non-finite loss at steps {bad}")
EOF
}
# On a GPU the demo stage takes well under its 120 s; a dry run shares two CPU cores with the other
# stages (and, in the test suite, with pytest), so it gets the time its CPU work needs there.
maybe_parallel demo "$([ "$DRY_RUN" = 1 ] && echo 300 || echo 120)" run_demo

# ---------------------------------------------------------------------------------- ttt_step
run_ttt_step() {
    local common=(--device cuda --lengths 4096 16384 32768 --impls lean nemo --repeats 3 --warmup 1
                  --timeout 90 --peak-seconds 2)
    if [ "$DRY_RUN" = 1 ]; then
        common=(--device cpu --lengths 32 --impls lean nemo --no-check --repeats 1 --warmup 0 --retries 0 --wait-quiet 0
                --peak-seconds 0.1 --hidden 64 --heads 2 --kv-heads 1 --head-dim 16 --intermediate 128
                --draft-vocab 64 --vocab 256)
    fi
    local ok=0
    "$PYTHON" benchmarks/ttt_step.py "${common[@]}" --dtype bf16 --json "$OUT/ttt_step_bf16.json" || ok=1
    [ "$DRY_RUN" = 1 ] && { grep -q "lean MFU" "$OUT/ttt_step.log" || ok=1; return $ok; }
    "$PYTHON" benchmarks/ttt_step.py "${common[@]}" --dtype fp32 --no-check --json "$OUT/ttt_step_fp32.json" || ok=1
    "$PYTHON" benchmarks/ttt_step.py "${common[@]}" --dtype bf16 --shape attention --no-check \
        --json "$OUT/ttt_step_attention_bf16.json" || ok=1
    return $ok
}
maybe_parallel ttt_step 300 run_ttt_step
wait

# ---------------------------------------------------------------------------------- summary
{
    echo "# draftsmith GPU check$([ "$DRY_RUN" = 1 ] && echo ' (dry run on CPU: plumbing only)')"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    sed 's/^/    /' "$OUT/environment.log"
    echo
    echo "| stage | verdict | time |"
    echo "|---|---|---|"
    for name in install environment gpu cuda_tests demo ttt_step; do
        cat "$WORK/verdict.$name" 2>/dev/null
    done
    log_tail cuda_tests 30
    log_tail demo 6
    printf '\n### ttt_step\n\n```\n'
    grep -v '^  \[' "$OUT/ttt_step.log" 2>/dev/null
    printf '```\n'
    [ -s "$OUT/install.log" ] && log_tail install 5
} >"$SUMMARY"
echo "[gpu_check] summary: $SUMMARY" >&2
! cat "$WORK"/verdict.* | grep -qv "| PASS |"
