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
#                 and the CUDA-graph runner's equivalence test (tests/equivalence/test_compiled.py)
#   kernel_bench  scripts/gpu_kernel_bench.py: each kernel against the eager op (CUDA events)
#   bench_0.6B    qwen3 bench on random weights of the 0.6B shape: decode tok/s at batch 1, 8
#   bench_8B      the same for the 8B shape (fewer combinations: building 8B random weights
#                 takes a while, and every combination builds its own)
#   floor         scripts/gpu_floor.py: batch-1 decode of each bench as a share of the floor
#                 set by the GPU's read rate, measured in the same run
#   equivalence   pytest tests -k "cuda or equivalence": the whole suite's selection, most of
#                 it on the CPU (last: the GPU-specific checks are in test_cuda)
#
# Environment: STEPS="build test_cuda ..." runs only those steps (in the order above);
# PYTHON picks the interpreter (default: python); DEADLINE (seconds, default none) stops
# the run in time: each step gets at most its own limit and what is left of the deadline,
# so a GPU lease of fixed length returns every log; NEW_TOKENS and REPEATS size the benches;
# ONLY_COMBOS="eager cuda ..." keeps only the bench combinations of those labels;
# PYTEST_WORKERS=N runs test_cuda in N processes (pytest-xdist; the tiny models' decoding is
# bound by Python and launches, so several share the GPU well); KERNEL_BENCH_ARGS are passed to
# the kernel benchmark (e.g. "--dtypes bfloat16 --repeats 10").
# Every step runs even if an earlier one failed; the exit status is 0 only when all of them
# passed.
set -u

OUT="${1:-./gpu-results}"
PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-env build backends test_cuda kernel_bench bench_0.6B bench_8B floor equivalence}"
DEADLINE="${DEADLINE:-}"
NEW_TOKENS="${NEW_TOKENS:-128}"
REPEATS="${REPEATS:-3}"
ONLY_COMBOS="${ONLY_COMBOS:-}"
PYTEST_WORKERS="${PYTEST_WORKERS:-}"
KERNEL_BENCH_ARGS="${KERNEL_BENCH_ARGS:-}"
export PYTHON NEW_TOKENS REPEATS ONLY_COMBOS
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export OUT
cd "$(dirname "$0")/.."
SUMMARY="$OUT/summary.txt"
status=0

wanted() { [[ " $STEPS " == *" $1 "* ]]; }

step() {  # step NAME LIMIT_S COMMAND...: run it (at most LIMIT_S), log it, record its exit
    local name="$1" limit="$2"
    shift 2
    wanted "$name" || return 0
    if [[ -n "$DEADLINE" ]]; then
        local left=$((DEADLINE - SECONDS - 5))
        ((left < limit)) && limit=$left
    fi
    if ((limit < 10)); then
        echo "== $name: skipped, the deadline is near" | tee -a "$SUMMARY"
        status=1
        return 0
    fi
    echo "== $name (at most $limit s): $*" | tee -a "$SUMMARY"
    local started=$SECONDS
    # A function runs in a child bash so that timeout can stop it.
    local body
    body="$(declare -f "$1" 2>/dev/null)"$'\n''"$@"'
    timeout --kill-after=5 "$limit" bash -c "$body" _ "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    local note=""
    [[ $rc -eq 124 || $rc -eq 137 ]] && note=", stopped at its limit"
    echo "   exit $rc after $((SECONDS - started)) s$note (log: $OUT/$name.log)" \
        | tee -a "$SUMMARY"
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
    --combo "cuda+static+graphs:$CUDA,kv_cache=static,runner=compile-graphs"
    --combo "compiled+graphs:attention=sdpa,kv_cache=static,runner=compile-graphs,$PORTABLE"
    --combo auto
)
# 8B: the fastest eager-runner combination and the CUDA-graph one (every combination draws
# its own 8B random weights on the CPU, which takes a while).
COMBOS_8B=(
    --combo "cuda:$CUDA,kv_cache=dynamic,runner=eager"
    --combo "cuda+static+graphs:$CUDA,kv_cache=static,runner=compile-graphs"
)

bench() {  # bench SHAPE --combo SPEC ...: the combinations ONLY_COMBOS keeps (all by default)
    local shape="$1" kept=()
    shift
    while (($#)); do
        if [[ -z "$ONLY_COMBOS" || " $ONLY_COMBOS " == *" ${2%%:*} "* ]]; then
            kept+=("$1" "$2")
        fi
        shift 2
    done
    set -- "${kept[@]}"
    qwen3 bench --model "random:$shape" --device cuda --dtype bfloat16 --batch-sizes 1,8 \
        --prompt-len 32 --new-tokens "$NEW_TOKENS" --repeats "$REPEATS" "$@" \
        --json "$OUT/bench_$shape.json" --markdown "$OUT/bench_$shape.md"
}

floor() {  # every bench that left a result
    local found=()
    for f in "$OUT"/bench_*.json; do [[ -f "$f" ]] && found+=("$f"); done
    ((${#found[@]})) || { echo "no bench results to compare with the floor"; return 1; }
    "$PYTHON" scripts/gpu_floor.py "${found[@]}" --markdown "$OUT/floor.md"
}

: >"$SUMMARY"
echo "gpu_verify $(date -u +%Y-%m-%dT%H:%M:%SZ) at $(git rev-parse --short HEAD 2>/dev/null)" \
    | tee -a "$SUMMARY"
step env 60 environment
step build 300 "$PYTHON" -m qwen3core_backends.cuda.build --verbose
step backends 60 qwen3 backends --device cuda --dtype bfloat16
GRAPHS_SUITE=tests/equivalence/test_compiled.py::test_cuda_graph_decode_matches_the_eager_reference_at_long_lengths
step test_cuda 600 "$PYTHON" -m pytest tests/backends/test_cuda_backend.py "$GRAPHS_SUITE" -v -rs \
    ${PYTEST_WORKERS:+-n "$PYTEST_WORKERS"} --durations=20 --junitxml="$OUT/test_cuda.xml"
# shellcheck disable=SC2086 # KERNEL_BENCH_ARGS is a list of words
step kernel_bench 300 "$PYTHON" scripts/gpu_kernel_bench.py --out "$OUT/kernel_bench" \
    $KERNEL_BENCH_ARGS
step bench_0.6B 900 bench 0.6B "${COMBOS[@]}"
step bench_8B 900 bench 8B "${COMBOS_8B[@]}"
step floor 120 floor
step equivalence 1800 "$PYTHON" -m pytest tests -k "cuda or equivalence" -q -rs \
    --junitxml="$OUT/equivalence.xml"
echo "results in $OUT; overall exit $status" | tee -a "$SUMMARY"
exit $status
