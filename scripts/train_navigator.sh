#!/usr/bin/env bash
# Reproduce the navigator S2 model (internvla_s2_node/assets/navigator) from a fresh clone:
# procedural houses -> oracle recordings (internvla-s2-eval --policy oracle --record) -> training in three
# rounds (internvla-s2-train) -> bf16 export -> evaluation on the held-out houses (internvla-s2-eval).
#
#   bash scripts/train_navigator.sh                 # on a machine with one CUDA GPU and ~16 cores
#
# GPU time: about 15 minutes of one H200 with 16 cores. The shipped model came from three device calls
# (521, 214 and 137 s; benchmarks/results/navigator_card_run3_2026-12-02.md): recording 211 s on 16
# processes (MuJoCo EGL), frame cache 29 s, then 684 + 531 + 256 training steps of batch 64 (178, 144
# and 72 s), each round starting from the previous round's bf16 export.
# Seeds: training houses 10000.. (episode_gen.TRAIN_FIRST_SEED), held-out houses 900000..900023
# (VAL_FIRST_SEED, shipped in sim/assets), episodes seeded by their house, model init seed 0, training
# seed 42. The shipped run recorded for 211 s (1467 episodes of 210 houses, whole houses in seed order,
# house i to process i mod 16); --record-houses 210 records the first 210 houses whole, the nearest
# run that does not depend on the clock.
# Evaluation runs the S2 node over ROS 2, so it needs rclpy (it ran on CPU here).
#
# On the lent device (no ROS, 600 s a call, a fresh machine after 30 s idle) the same run is
# scripts/navigator_device/: prepare.sh here, then call.sh there, three times back to back:
#   REC_S=210 TRAIN_S=235 bash scripts/navigator_device/call.sh
#   INIT=runs/nav_device/export LR=7e-4 TRAIN_S=200 EPOCHS=20 bash scripts/navigator_device/call.sh
#   INIT=runs/nav_device/export LR=4e-4 TRAIN_S=95 EPOCHS=20 bash scripts/navigator_device/call.sh
# (each call brings the model back as 15 MiB parts: cat model.tar.part-* | tar -x -C DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs/navigator}
WORK25=${WORK25:-runs/navigator25}
case "${1:-}" in
""|-*)
    python scripts/train_navigator.py houses record init --work "$WORK" --houses 800 --record-houses 210 --record-seconds 1200 "$@"
    ROUND=(--work "$WORK" --batch 64 --sample-step 2 --stop-repeat 2 --pixel-goal-repeat 2)
    python scripts/train_navigator.py train export "${ROUND[@]}" --steps 684 --lr 1.5e-3 --export-dir "$WORK/round1"
    python scripts/train_navigator.py train export "${ROUND[@]}" --steps 531 --lr 7e-4 --init-from "$WORK/round1" --export-dir "$WORK/round2"
    python scripts/train_navigator.py train export "${ROUND[@]}" --steps 256 --lr 4e-4 --init-from "$WORK/round2" --export-dir "$WORK/export"
    for model in round1 round2 export; do
        internvla-s2-eval --policy s2 --model "$WORK/$model" --params-file config/navigator_s2.yaml \
            --episodes internvla_s2_node/sim/assets/episodes/mujoco_val_unseen.json.gz --out "$WORK/eval_$model"
    done
    internvla-s2-eval --policy oracle random --episodes internvla_s2_node/sim/assets/episodes/mujoco_val_unseen.json.gz --out "$WORK/eval_export"
    python benchmarks/navigator_results.py --held-out "$WORK/eval_export" --curve 684="$WORK/eval_round1" 1215="$WORK/eval_round2" \
        1471="$WORK/eval_export" --train-log "$WORK/export/train_log.jsonl" --out "$WORK/navigator_results" ;;
*)
    echo "train_navigator.sh: unknown stage '$1'; use no argument (or train_navigator.py options for the first stages)" >&2; exit 2 ;;
esac
