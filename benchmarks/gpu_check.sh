#!/usr/bin/env bash
# One command for the GPU machine (issue 18): install what is missing from carried wheels, run the tests
# marked `gpu`, then every GPU figure (benchmarks/gpu_bench.py), all written under $OUT (or --out DIR).
#
#   benchmarks/gpu_check.sh [--dry-run] [--out DIR] [--corpus PATH] [--wheels DIR] [--time-cap S]
#
# --dry-run: the same steps on the CPU at toy sizes (tests with SEQPLAY_TEST_DEVICE=cpu), so a machine
# without CUDA (CI, tests/test_gpu_check.py) proves the script end to end.
# Wheels: `benchmarks/gpu_wheels.sh` (run here, with a registry) fills .whl/ with the pure-Python
# packages the GPU image lacks; carry .whl (and a copy of the corpus) with the device call.
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
DRY=0
OUT_DIR="${OUT:-$REPO/gpu_out}"
CORPUS="$REPO/../shared/corpora/tinyshakespeare.txt"
[ -f "$REPO/.gpu_data/tinyshakespeare.txt" ] && CORPUS="$REPO/.gpu_data/tinyshakespeare.txt"
WHEELS="$REPO/.whl"
CAP=240
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT_DIR="$2"; shift ;;
        --corpus) CORPUS="$2"; shift ;;
        --wheels) WHEELS="$2"; shift ;;
        --time-cap) CAP="$2"; shift ;;
        *) echo "error: unknown option $1; see the header of $0" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$OUT_DIR"
PY=python3
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    SITE="$(mktemp -d)"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl \
        || { echo "error: installing the carried wheels failed" >&2; exit 2; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export SEQPLAY_HOME="$(mktemp -d)"
$PY -c "import engine, platformdirs, safetensors, tokenizers, click" \
    || { echo "error: seqplay's engine does not import here; carry the wheels from benchmarks/gpu_wheels.sh" >&2; exit 2; }

STATUS=0
BENCH_ARGS=(--out "$OUT_DIR" --corpus "$CORPUS" --time-cap "$CAP")
if [ "$DRY" = 1 ]; then
    export SEQPLAY_TEST_DEVICE=cpu
    BENCH_ARGS+=(--dry-run)
else
    export SEQPLAY_TEST_DEVICE=cuda
    nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1 || true
fi
echo "== 1. tests marked gpu (device: $SEQPLAY_TEST_DEVICE)"
$PY -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -o addopts="" -rs --junitxml="$OUT_DIR/gpu_tests.xml" \
    2>&1 | tee "$OUT_DIR/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
echo "== 2-4. figures (benchmarks/gpu_bench.py)"
$PY benchmarks/gpu_bench.py "${BENCH_ARGS[@]}" 2>&1 | tee "$OUT_DIR/gpu_bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1
echo "== done: $OUT_DIR (status $STATUS)"
exit $STATUS
