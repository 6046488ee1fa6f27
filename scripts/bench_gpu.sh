#!/usr/bin/env bash
# TSN-R50 1x1x8 training throughput on this machine's CUDA GPU(s), in under 5 minutes: the
# compute ceiling (uint8 batches already on the GPU, bf16-mixed, channels_last), then real
# loading from generated Kinetics-like clips, their ratio, and a DDP run on every GPU.
# Prints a markdown snippet for docs/benchmarks.md. See scripts/bench_gpu.py for the stages.
# Then every family of the model table on the GPU (scripts/bench_models.py --device cuda: clips/s
# and peak memory), written to $MODELS_JSON for `bench_models.py --merge` into the README table.
#
#   bash scripts/bench_gpu.sh                  # batch 32, one loader worker per CPU core
#   bash scripts/bench_gpu.sh --batch 64 --decoder decord
#   bash scripts/bench_gpu.sh --dry-run        # every stage on the CPU, tiny (no GPU needed)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
if [[ " $* " != *" --dry-run "* ]] && ! nvidia-smi -L >/dev/null 2>&1; then
    echo "error: no NVIDIA GPU found (nvidia-smi -L failed); scripts/bench_gpu.sh measures" \
        "a CUDA GPU. Use --dry-run to check the script on a CPU." >&2
    exit 1
fi
start=$SECONDS
"$PYTHON" scripts/bench_gpu.py "$@"
if [[ " $* " != *" --dry-run "* ]]; then
    "$PYTHON" scripts/bench_models.py --device cuda --batch 8 --rounds 5 \
        --json "${MODELS_JSON:-/tmp/actionrec_bench_models_gpu.json}"
fi
echo "bench_gpu.sh: $((SECONDS - start)) s in all"
