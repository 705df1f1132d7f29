#!/usr/bin/env bash
# The GPU half of issue 6 in one call on a lent GPU: the CUDA kernel tests, then the LIF benchmark (snnlab's
# Triton kernels against the torch loop, snnTorch, Norse and SpikingJelly, with a Triton configuration sweep).
# Logs and results go to $OUT; a short table is printed last. Run from anywhere inside the repository:
#
#   OUT=/path/to/out PYTHONPATH=/tmp/site bash benchmarks/gpu_session.sh
#
# snnlab runs from this source tree (not installed). Beside torch (CUDA), triton, numpy, pytest, pyyaml, typer,
# tqdm, matplotlib and safetensors, PYTHONPATH must provide: pydantic (with pydantic-core, annotated-types,
# typing-inspection, typing-extensions) for snnlab itself; snntorch, spikingjelly 2.0.0 and loguru, and Norse
# (its source tree) for the comparison. A missing comparison library is reported as "not installed".
# Time: about 3-4 minutes of tests (each kernel variant compiles once) and 3-5 of benchmark; each is capped.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
    python - <<'EOF'
import importlib

for name in ["torch", "triton", "numpy", "pydantic", "snntorch", "spikingjelly", "norse", "loguru"]:
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "(no version)"))
    except Exception as exc:
        print(name, "MISSING:", exc)
import torch

print("cuda", torch.version.cuda, torch.cuda.get_device_name(), torch.cuda.get_device_capability())
EOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== CUDA kernel tests (log: $OUT/tests_cuda.txt)"
timeout 250 python -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_memory_format.py \
    tests/test_mixed_precision.py tests/test_graphs.py -k "cuda or hopper" --durations=5 \
    > "$OUT/tests_cuda.txt" 2>&1
echo "pytest exit code $?" >> "$OUT/tests_cuda.txt"

echo "== benchmark (log: $OUT/bench_cuda.txt)"
timeout 290 python benchmarks/lif_kernels.py --device cuda --sweep --out "$OUT/lif_kernels_cuda.json" \
    > "$OUT/bench_cuda.txt" 2>&1
echo "benchmark exit code $?" >> "$OUT/bench_cuda.txt"

echo "== tests"
grep -E "passed|failed|error|Error|exit code" "$OUT/tests_cuda.txt" | tail -n 12
echo "== benchmark"
grep -E "not available|not installed|sweep|using|error|exit code" "$OUT/bench_cuda.txt" | tail -n 20
if [ -f "$OUT/lif_kernels_cuda.json" ]; then
    python benchmarks/lif_kernels.py --summarize "$OUT/lif_kernels_cuda.json"
else
    tail -n 40 "$OUT/bench_cuda.txt"
fi
