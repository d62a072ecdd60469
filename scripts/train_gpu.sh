#!/usr/bin/env bash
# Single CUDA GPU, mixed precision. Extra arguments are Hydra overrides:
#   ./scripts/train_gpu.sh logger=wandb logger.project=my-project
set -euo pipefail
cd "$(dirname "$0")/.."

exec uv run python -m project.train.run \
  model=causal_lm data=modular trainer=gpu_1 \
  trainer.max_epochs=1000 trainer.precision=16-mixed \
  "$@"
