#!/usr/bin/env bash
# Short smoke run on Apple Silicon (MPS). Without MPS it says so and runs on CPU instead.
# Extra arguments are Hydra overrides: ./scripts/smoke_local.sh trainer.max_epochs=5
set -euo pipefail
cd "$(dirname "$0")/.."

if uv run python -c "import sys, torch; sys.exit(0 if torch.backends.mps.is_available() else 1)"; then
  trainer=mps
else
  echo "smoke_local.sh: MPS is not available on this machine; running on CPU instead (trainer=cpu)."
  trainer=cpu
fi

exec uv run python -m project.train.run \
  model=causal_lm data=modular trainer="$trainer" \
  trainer.max_epochs=20 trainer.log_every_n_steps=1 \
  "$@"
