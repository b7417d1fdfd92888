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
# Recording now leaves out the depth images and training reads frames through --frame-cache: the
# RGB frames and the model's input tensors are the same (tests/test_sim_recording.py,
# tests/test_train_frame_cache.py), so this reproduces the shipped run's data and samples.
# Evaluation runs the S2 node over ROS 2, so it needs rclpy (it ran on CPU here).
#
# The next run is one device call, scripts/navigator_device/ (prepare.sh here, call.sh there; see
# benchmarks/results/navigator_card_2026-12-02.md, "Next run"). The stages below are the earlier plan,
# one per device call:
#   bash scripts/train_navigator.sh houses25          # here (CPU, ~1 min): 700 houses, carried to the device
#   bash scripts/train_navigator.sh record25          # device call 1 (~360 s): 16 recording processes for 330 s
#   bash scripts/train_navigator.sh train25           # device call 2 (~590 s): init, batch probe, training, export
#   bash scripts/train_navigator.sh pack25 DIR OUT    # device calls 3-5 (~30 s each): one checkpoint as <=15 MiB parts
#   bash scripts/train_navigator.sh unpack25 OUT DIR  # here: the parts back into a checkpoint folder, then evaluate it
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs/navigator}
WORK25=${WORK25:-runs/navigator25}
case "${1:-}" in
houses25)
    python scripts/train_navigator.py houses --work "$WORK25" --houses 700 ;;
record25)
    python scripts/train_navigator.py record --work "$WORK25" --procs 16 --record-seconds 330 ;;
train25)
    # stop_repeat 1 and sample_step 2: see the card. --train-seconds 420 leaves init (14 s), two 40-step
    # probes and the export inside a 600 s call; --checkpoints 4 keeps the curve's checkpoints on the device.
    python scripts/train_navigator.py init train export --work "$WORK25" --probe-batches 16 64 --lr 1e-3 \
        --train-seconds 420 --max-epochs 8 --sample-step 2 --stop-repeat 1 --checkpoints 4 \
        --export-dir "$WORK25/export" ;;
pack25)  # pack25 CHECKPOINT_DIR OUT: bf16 export of one checkpoint, tarred and split into 15 MiB parts
    python scripts/train_navigator.py export --work "$WORK25" --export-from "$2" --export-dir "$WORK25/pack"
    tar -C "$WORK25/pack" -cf - . | split -b 15m - "$3/$(basename "$2").tar.part-"
    rm -rf "$WORK25/pack" ;;
unpack25)  # unpack25 PARTS_DIR MODEL_DIR, then: internvla-s2-eval --policy s2 --model MODEL_DIR ... (as below)
    for first in "$2"/*.tar.part-aa; do
        name=$(basename "$first" .tar.part-aa); mkdir -p "$3/$name"
        cat "$2/$name".tar.part-* | tar -xf - -C "$3/$name"
    done ;;
""|-*)
    python scripts/train_navigator.py houses record init train export --work "$WORK" --record-houses 91 \
        --record-seconds 600 --steps 1431 --lr 1e-3 --export-dir "$WORK/export" "$@"
    internvla-s2-eval --policy s2 oracle random --model "$WORK/export" --params-file config/navigator_s2.yaml \
        --episodes internvla_s2_node/sim/assets/episodes/mujoco_val_unseen.json.gz --out "$WORK/eval_val_unseen"
    python benchmarks/navigator_results.py --held-out "$WORK/eval_val_unseen" --train-log "$WORK/export/train_log.jsonl" \
        --out "$WORK/navigator_results" ;;
*)
    echo "train_navigator.sh: unknown stage '$1'; use no argument, houses25, record25, train25, pack25 or unpack25" >&2; exit 2 ;;
esac
