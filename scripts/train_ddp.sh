#!/usr/bin/env bash
# Multi-GPU DDP on one machine (all visible GPUs unless trainer.devices=<n> is given).
#   ./scripts/train_ddp.sh trainer.devices=4
# On CPU (gloo), e.g. to try it on a laptop: ./scripts/train_ddp.sh trainer.accelerator=cpu trainer.devices=2
set -euo pipefail
cd "$(dirname "$0")/.."

devices=""
for arg in "$@"; do
  case "$arg" in trainer.devices=*|trainer.accelerator=*) devices="given" ;; esac
done
if [ -z "$devices" ]; then
  n=$(uv run python -c "import torch; print(torch.cuda.device_count())")
  if [ "$n" -lt 1 ]; then
    echo "train_ddp.sh: no CUDA GPU found; pass trainer.accelerator=cpu trainer.devices=<n> to run DDP on CPU." >&2
    exit 2
  fi
  set -- "trainer.devices=$n" "$@"
fi

exec uv run python -m project.train.run \
  model=causal_lm data=modular trainer=ddp \
  trainer.max_epochs=1000 \
  "$@"
