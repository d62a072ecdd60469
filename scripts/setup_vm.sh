#!/usr/bin/env bash
# Fresh Linux VM (RunPod, Lambda, Vast.ai, GCP, ...): installs uv and rclone if missing, syncs the
# project environment, prints a torch / device summary. Idempotent; works as root without sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

if ! command -v uv >/dev/null 2>&1; then
  echo "setup_vm.sh: installing uv"
  if command -v curl >/dev/null 2>&1 && curl -LsSf https://astral.sh/uv/install.sh -o /tmp/uv-install.sh 2>/dev/null; then
    sh /tmp/uv-install.sh
    export PATH="$HOME/.local/bin:$PATH"
  else
    python3 -m pip install --user uv || python3 -m pip install uv
    export PATH="$HOME/.local/bin:$PATH"
  fi
fi
echo "setup_vm.sh: uv $(uv --version | awk '{print $2}')"

if ! command -v rclone >/dev/null 2>&1; then
  echo "setup_vm.sh: installing rclone"
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone
  elif command -v curl >/dev/null 2>&1; then
    curl -fsSL https://rclone.org/install.sh | $SUDO bash
  else
    echo "setup_vm.sh: could not install rclone (no apt-get or curl); cloud sync will be unavailable" >&2
  fi
fi
command -v rclone >/dev/null 2>&1 && echo "setup_vm.sh: $(rclone version | head -1)"

uv sync --compile-bytecode

uv run python - <<'PY'
import torch
print(f"torch {torch.__version__}  cuda available: {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}  {p.total_memory / 2**30:.0f} GiB  bf16: {torch.cuda.is_bf16_supported()}")
print(f"mps available: {torch.backends.mps.is_available()}  cpu threads: {torch.get_num_threads()}")
PY
echo "setup_vm.sh: done. Next: ./scripts/train_gpu.sh (or RCLONE_DEST=remote:path ./scripts/train_gpu.sh)"
