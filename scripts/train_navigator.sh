#!/usr/bin/env bash
# Reproduce the navigator S2 model (internvla_s2_node/assets/navigator) from a fresh clone:
# procedural houses -> oracle recordings (internvla-s2-eval --policy oracle --record) -> training in five
# rounds (internvla-s2-train) -> bf16 export -> evaluation on the held-out houses (internvla-s2-eval).
#
#   bash scripts/train_navigator.sh                 # on a machine with one CUDA GPU and ~16 cores
#
# GPU time: about 33 minutes of one H200 with 16 cores (run 5's 25, plus round 5's 241 s of recording and 199 s of steps). The shipped model (run 6,
# benchmarks/results/navigator_card_run6_2026-12-03.md) is run 5's model trained on in one more round (round 5:
# one device call that recorded 1685 episodes of 249 houses not recorded before, from seed 10237, in 241 s, then
# 1050 steps of a cosine at 5e-4 with --turn-repeat 2). Run 5 is run 4's model (three device calls: recording 241 s on
# 16 processes, 1658 episodes of 237 houses; round 1, one warm-up and cosine of 1576 steps of batch 64 at 1.5e-3,
# split over two calls by --time-limit and --resume; round 2, 1046 steps at 7e-4 from round 1's bf16 export)
# trained on in two more rounds with every turns sample twice (--turn-repeat 2), each in one device call that
# recorded again (1659 and 1674 episodes in 241 s) and stopped at its time limit: round 3, steps 1-1064 of a
# 2900-step cosine at 7e-4 from run 4; round 4, steps 1-1073 of a 1300-step cosine at 5e-4 from round 3's export.
# --stop-at-step repeats those cuts here.
# Samples: --sample-step 2 --stop-repeat 2 --pixel-goal-repeat 1 (rounds 3-4: --turn-repeat 2), pixel goals by train/goals.py.
# Seeds: training houses 10000.. (episode_gen.TRAIN_FIRST_SEED), held-out houses 900000..900023
# (VAL_FIRST_SEED, shipped in sim/assets), episodes seeded by their house, model init seed 0, training
# seed 42. The shipped run recorded for 241 s (whole houses in seed order, house i to process i mod 16);
# --record-houses 237 records the first 237 houses whole, the nearest run that does not depend on the clock.
# Evaluation runs the S2 node over ROS 2, so it needs rclpy (it ran on CPU here).
#
# On the lent device (no ROS, 600 s a call, a fresh machine after 30 s idle) the same run is
# scripts/navigator_device/: prepare.sh here, then call.sh there (each call brings the model back as 15 MiB parts:
# cat model.tar.part-* | tar -x -C DIR). Run 4's three calls, back to back:
#   CUDA_TESTS=1 REC_S=240 TRAIN_S=215 TOTAL_S=715 PGR=1 EPOCHS=12 bash scripts/navigator_device/call.sh
#   RESUME=1 TRAIN_S=480 PGR=1 EPOCHS=12 bash scripts/navigator_device/call.sh
#   INIT=runs/nav_device/export LR=7e-4 TRAIN_S=420 PGR=1 EPOCHS=20 bash scripts/navigator_device/call.sh
# (TOTAL_S sizes round 1 from a 40-step probe, which came out at 1576 steps). Rounds 3 and 4, with the previous
# round's model.safetensors copied over internvla_s2_node/assets/navigator's (the tree plus a second model would
# pass the device's 64 MiB):
#   CUDA_TESTS=1 REC_S=240 TRAIN_S=215 STEPS=2900 PGR=1 TURN_REPEAT=2 EPOCHS=20 LR=7e-4 INIT=internvla_s2_node/assets/navigator bash scripts/navigator_device/call.sh
#   REC_S=240 TRAIN_S=265 STEPS=1300 PGR=1 TURN_REPEAT=2 EPOCHS=20 LR=5e-4 INIT=internvla_s2_node/assets/navigator bash scripts/navigator_device/call.sh
# Round 5, from run 5 (the shipped model at cd068f4):
#   REC_S=240 TRAIN_S=265 STEPS=1050 PGR=1 TURN_REPEAT=2 EPOCHS=20 LR=5e-4 FIRST_SEED=10237 INIT=internvla_s2_node/assets/navigator bash scripts/navigator_device/call.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs/navigator}
case "${1:-}" in
""|-*)
    python scripts/train_navigator.py houses record init --work "$WORK" --houses 800 --record-houses 237 --record-seconds 1200 "$@"
    SAMPLES=(--batch 64 --sample-step 2 --stop-repeat 2 --pixel-goal-repeat 1)
    ROUND=(--work "$WORK" "${SAMPLES[@]}")
    python scripts/train_navigator.py train export "${ROUND[@]}" --steps 1576 --lr 1.5e-3 --export-dir "$WORK/round1"
    python scripts/train_navigator.py train export "${ROUND[@]}" --steps 1046 --lr 7e-4 --init-from "$WORK/round1" --export-dir "$WORK/round2"
    python scripts/train_navigator.py train export "${ROUND[@]}" --turn-repeat 2 --steps 2900 --stop-at-step 1064 --lr 7e-4 \
        --init-from "$WORK/round2" --export-dir "$WORK/round3"
    python scripts/train_navigator.py train export "${ROUND[@]}" --turn-repeat 2 --steps 1300 --stop-at-step 1073 --lr 5e-4 \
        --init-from "$WORK/round3" --export-dir "$WORK/round4"
    # round 5 (run 6): 249 houses not recorded before, from seed 10237, in a work folder of their own
    mkdir -p "$WORK/new_houses" && ln -sfn "$(realpath "$WORK/houses")" "$WORK/new_houses/houses"
    python scripts/train_navigator.py record --work "$WORK/new_houses" --record-first-seed 10237 --record-houses 249 --record-seconds 1200
    python scripts/train_navigator.py train export --work "$WORK/new_houses" "${SAMPLES[@]}" --turn-repeat 2 --steps 1050 --lr 5e-4 \
        --init-from "$WORK/round4" --export-dir "$WORK/export"
    for model in round1 round2 round4 export; do
        internvla-s2-eval --policy s2 --model "$WORK/$model" --params-file config/navigator_s2.yaml \
            --episodes internvla_s2_node/sim/assets/episodes/mujoco_val_unseen.json.gz --out "$WORK/eval_$model"
    done
    internvla-s2-eval --policy oracle random --episodes internvla_s2_node/sim/assets/episodes/mujoco_val_unseen.json.gz --out "$WORK/eval_export"
    python benchmarks/navigator_results.py --held-out "$WORK/eval_export" --curve 1576="$WORK/eval_round1" 2622="$WORK/eval_round2" 4759="$WORK/eval_round4" 5809="$WORK/eval_export" \
        --train-log "$WORK/export/train_log.jsonl" --out "$WORK/navigator_results" ;;
*)
    echo "train_navigator.sh: unknown stage '$1'; use no argument (or train_navigator.py options for the first stages)" >&2; exit 2 ;;
esac
