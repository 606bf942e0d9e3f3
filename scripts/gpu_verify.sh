#!/usr/bin/env bash
# Verify the cuda backend on a machine with an NVIDIA GPU, and record the results.
#
#   scripts/gpu_verify.sh [OUT_DIR]            (default: ./gpu-results)
#
# Steps, each logged to OUT_DIR/<step>.log, exit codes in OUT_DIR/summary.txt:
#   env           the GPU, driver, torch and nvcc versions
#   build         python -m qwen3core_backends.cuda.build: compile the kernels into the cache
#   backends      qwen3 backends --device cuda: which implementations are available, and why not
#   test_cuda     pytest tests/backends/test_cuda_backend.py (kernels vs eager, model equality)
#   equivalence   pytest tests -k "cuda or equivalence": the suite for every combination
#   kernel_bench  scripts/gpu_kernel_bench.py: each kernel against the eager op (CUDA events)
#   bench_0.6B    qwen3 bench on random weights of the 0.6B shape: decode tok/s at batch 1, 8
#   bench_8B      the same for the 8B shape
#
# Environment: STEPS="build test_cuda ..." runs only those steps (in the order above);
# PYTHON picks the interpreter (default: python). Every step runs even if an earlier one
# failed; the exit status is 0 only when all of them passed.
set -u

OUT="${1:-./gpu-results}"
PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-env build backends test_cuda equivalence kernel_bench bench_0.6B bench_8B}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
SUMMARY="$OUT/summary.txt"
status=0

wanted() { [[ " $STEPS " == *" $1 "* ]]; }

step() {  # step NAME COMMAND...: run it, log it, record its exit code
    local name="$1"
    shift
    wanted "$name" || return 0
    echo "== $name: $*" | tee -a "$SUMMARY"
    local started=$SECONDS
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "   exit $rc after $((SECONDS - started)) s (log: $OUT/$name.log)" | tee -a "$SUMMARY"
    [[ $rc -eq 0 ]] || status=1
}

environment() {
    nvidia-smi || true
    "$PYTHON" - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else None,
      "capability", torch.cuda.get_device_capability() if torch.cuda.is_available() else None)
print("flash attention compiled in:", torch.backends.cuda.is_flash_attention_available())
EOF
    command -v nvcc && nvcc --version
    "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
}

# Every component named, so that a combination measures what its label says (an unnamed
# component would go to the highest-priority implementation, i.e. the cuda one).
PORTABLE="norm=eager,rope=eager,mlp=eager"
CUDA="norm=cuda,rope=cuda,mlp=cuda,attention=flash"
COMBOS=(
    --combo eager
    --combo "sdpa+static:attention=sdpa,kv_cache=static,runner=eager,$PORTABLE"
    --combo "compiled:attention=sdpa,kv_cache=static,runner=compile,$PORTABLE"
    --combo "cuda:$CUDA,kv_cache=dynamic,runner=eager"
    --combo "cuda+static+compiled:$CUDA,kv_cache=static,runner=compile"
    --combo auto
)

bench() {  # bench SHAPE
    if ! qwen3 bench --help >/dev/null 2>&1; then
        echo "qwen3 bench is not available in this checkout; skipped"
        return 0
    fi
    qwen3 bench --model "random:$1" --device cuda --dtype bfloat16 --batch-sizes 1,8 \
        --prompt-len 32 --new-tokens 128 --repeats 3 "${COMBOS[@]}" \
        --json "$OUT/bench_$1.json" --markdown "$OUT/bench_$1.md"
}

: >"$SUMMARY"
echo "gpu_verify $(date -u +%Y-%m-%dT%H:%M:%SZ) at $(git rev-parse --short HEAD 2>/dev/null)" \
    | tee -a "$SUMMARY"
step env environment
step build "$PYTHON" -m qwen3core_backends.cuda.build --verbose
step backends qwen3 backends --device cuda --dtype bfloat16
step test_cuda "$PYTHON" -m pytest tests/backends/test_cuda_backend.py -v -rs \
    --junitxml="$OUT/test_cuda.xml"
step equivalence "$PYTHON" -m pytest tests -k "cuda or equivalence" -q -rs \
    --junitxml="$OUT/equivalence.xml"
step kernel_bench "$PYTHON" scripts/gpu_kernel_bench.py --out "$OUT/kernel_bench"
step bench_0.6B bench 0.6B
step bench_8B bench 8B
echo "results in $OUT; overall exit $status" | tee -a "$SUMMARY"
exit $status
