#!/usr/bin/env bash
# Set up (idempotent) and run the main job: simulated evaluation of the S2 node over ROS 2
# on the bundled MuJoCo houses with the tiny random-weight checkpoint, side by side with the
# oracle and random reference policies. Extra arguments go to internvla-s2-eval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec .venv/bin/internvla-s2-eval --policy s2 oracle random --model tiny:qwen3_vl --out runs/demo "$@"
