#!/usr/bin/env bash
# Reproduce the navigator S2 model (internvla_s2_node/assets/navigator) from a fresh clone:
# procedural houses -> oracle recordings (internvla-s2-eval --policy oracle --record) -> training
# (internvla-s2-train) -> bf16 export -> evaluation on the held-out houses (internvla-s2-eval).
#
#   bash scripts/train_navigator.sh                 # on a machine with one CUDA GPU and ~16 cores
#
# GPU time: the shipped model took one 10-minute call on one H200 with 16 cores: recording 151 s
# (16 processes, MuJoCo EGL), training 1431 steps of batch 16 in 370 s, export seconds.
# Seeds: training houses 10000.. (episode_gen.TRAIN_FIRST_SEED), held-out houses 900000..900023
# (VAL_FIRST_SEED, shipped in sim/assets), episodes seeded by their house, model init seed 0,
# training seed 42. The shipped run recorded the 631 episodes that fit in 150 s (episode ids 0-630 of
# mujoco_train, houses 10000-10090); --record-houses 91 records those houses whole.
# Evaluation runs the S2 node over ROS 2, so it needs rclpy (it ran on CPU here).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs/navigator}
python scripts/train_navigator.py houses record init train export --work "$WORK" --record-houses 91 \
    --record-seconds 600 --steps 1431 --lr 1e-3 --export-dir "$WORK/export" "$@"
internvla-s2-eval --policy s2 oracle random --model "$WORK/export" --params-file config/navigator_s2.yaml \
    --episodes internvla_s2_node/sim/assets/episodes/mujoco_val_unseen.json.gz --out "$WORK/eval_val_unseen"
python benchmarks/navigator_results.py --held-out "$WORK/eval_val_unseen" --train-log "$WORK/export/train_log.jsonl" \
    --out "$WORK/navigator_results"
