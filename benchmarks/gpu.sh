#!/usr/bin/env bash
# The GPU check, for a machine with CUDA GPUs and PyTorch (chargen runs from src/, nothing is
# installed). From the repository root, within about 8 minutes on one GPU: training and
# generation speed, a default run on tiny Shakespeare (3 minutes), and torchrun on every
# visible GPU; each part prints its table and writes its section of benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu.sh                  # CORPUS=path MINUTES=3 to change the default run
#
# The corpus is ../shared/corpora/tinyshakespeare.txt where it exists; a machine without the
# shared folder can be given a copy with CORPUS=...; else the built-in corpus is used.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
CORPUS=${CORPUS:-../shared/corpora/tinyshakespeare.txt}
if [ ! -f "$CORPUS" ]; then
    echo "gpu.sh: $CORPUS not found; the default run uses builtin:python-docs" >&2
    CORPUS=builtin:python-docs
fi
nvidia-smi -L || true
python3 benchmarks/gpu.py --corpus "$CORPUS" --minutes "${MINUTES:-3}"

gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
run="$(mktemp -d)/ddp"
torchrun --standalone --nproc_per_node="$gpus" -m chargen train "$CORPUS" --out "$run" \
    --device cuda --no-auto --max-steps 300 --eval-every 300 --quiet
python3 benchmarks/gpu.py --torchrun-run "$run" --gpus "$gpus"
