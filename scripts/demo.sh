#!/usr/bin/env bash
# Set up (idempotent) and run the main job: simulated evaluation of the S2 node over ROS 2 on
# the bundled MuJoCo houses with the navigator model shipped in the package (a small Qwen3-VL
# trained here on procedural houses: README "The navigator model"), side by side with the oracle
# and random reference policies. Extra arguments go to internvla-s2-eval; with --model, that
# model is used instead (and config/navigator_s2.yaml is not applied).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
model=(--model internvla_s2_node/assets/navigator --params-file config/navigator_s2.yaml)
for arg in "$@"; do
    case "$arg" in --model|--model=*) model=() ;; esac
done
exec .venv/bin/internvla-s2-eval --policy s2 oracle random "${model[@]}" --out runs/demo "$@"
