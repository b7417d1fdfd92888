#!/usr/bin/env bash
# Reproduce the navigator S2 model (internvla_s2_node/assets/navigator) from a fresh clone:
# procedural houses -> oracle recordings (internvla-s2-eval --policy oracle --record) -> training in two
# rounds (internvla-s2-train) -> bf16 export -> evaluation on the held-out houses (internvla-s2-eval).
#
#   bash scripts/train_navigator.sh                 # on a machine with one CUDA GPU and ~16 cores
#
# GPU time: about 15 minutes of one H200 with 16 cores. The shipped model (run 4,
# benchmarks/results/navigator_card_run4_2026-12-02.md) came from three device calls (579, 219 and 337 s):
# recording 241 s on 16 processes (MuJoCo EGL; 1658 episodes of 237 houses), then round 1, one
# warm-up and cosine of 1576 steps of batch 64 at 1.5e-3 (398 s of steps, split over two calls by
# --time-limit and --resume), then round 2, 1046 steps at 7e-4 from round 1's bf16 export (266 s).
# Samples: --sample-step 2 --stop-repeat 2 --pixel-goal-repeat 1, pixel goals by train/goals.py.
# Seeds: training houses 10000.. (episode_gen.TRAIN_FIRST_SEED), held-out houses 900000..900023
# (VAL_FIRST_SEED, shipped in sim/assets), episodes seeded by their house, model init seed 0, training
# seed 42. The shipped run recorded for 241 s (whole houses in seed order, house i to process i mod 16);
# --record-houses 237 records the first 237 houses whole, the nearest run that does not depend on the clock.
# Evaluation runs the S2 node over ROS 2, so it needs rclpy (it ran on CPU here).
#
# On the lent device (no ROS, 600 s a call, a fresh machine after 30 s idle) the same run is
# scripts/navigator_device/: prepare.sh here, then call.sh there, three times back to back:
#   CUDA_TESTS=1 REC_S=240 TRAIN_S=215 TOTAL_S=715 PGR=1 EPOCHS=12 bash scripts/navigator_device/call.sh
#   RESUME=1 TRAIN_S=480 PGR=1 EPOCHS=12 bash scripts/navigator_device/call.sh
#   INIT=runs/nav_device/export LR=7e-4 TRAIN_S=420 PGR=1 EPOCHS=20 bash scripts/navigator_device/call.sh
# (TOTAL_S sizes round 1 from a 40-step probe, which came out at 1576 steps; each call brings the model
# back as 15 MiB parts: cat model.tar.part-* | tar -x -C DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs/navigator}
case "${1:-}" in
""|-*)
    python scripts/train_navigator.py houses record init --work "$WORK" --houses 800 --record-houses 237 --record-seconds 1200 "$@"
    ROUND=(--work "$WORK" --batch 64 --sample-step 2 --stop-repeat 2 --pixel-goal-repeat 1)
    python scripts/train_navigator.py train export "${ROUND[@]}" --steps 1576 --lr 1.5e-3 --export-dir "$WORK/round1"
    python scripts/train_navigator.py train export "${ROUND[@]}" --steps 1046 --lr 7e-4 --init-from "$WORK/round1" --export-dir "$WORK/export"
    for model in round1 export; do
        internvla-s2-eval --policy s2 --model "$WORK/$model" --params-file config/navigator_s2.yaml \
            --episodes internvla_s2_node/sim/assets/episodes/mujoco_val_unseen.json.gz --out "$WORK/eval_$model"
    done
    internvla-s2-eval --policy oracle random --episodes internvla_s2_node/sim/assets/episodes/mujoco_val_unseen.json.gz --out "$WORK/eval_export"
    python benchmarks/navigator_results.py --held-out "$WORK/eval_export" --curve 1576="$WORK/eval_round1" 2622="$WORK/eval_export" \
        --train-log "$WORK/export/train_log.jsonl" --out "$WORK/navigator_results" ;;
*)
    echo "train_navigator.sh: unknown stage '$1'; use no argument (or train_navigator.py options for the first stages)" >&2; exit 2 ;;
esac
