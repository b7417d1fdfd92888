#!/usr/bin/env bash
# One device call (H200, 16 cores, <= 600 s): record -> (DIAG=1) step diagnosis -> frame cache, probe and training -> export.
# Every log goes straight to $OUT (a pipe's buffer dies with a timeout); the model comes back as 15 MiB parts.
#   REC_S (300) recording seconds, TRAIN_S (150) training seconds, BATCH (64), LR (1.5e-3), PROCS (16), WORKERS (15),
#   INIT (a checkpoint to continue from; default: seeded random weights), FIRST_SEED (record houses from this seed on),
#   PERTURB (the oracle's detour probability per step while recording: recovery data; default none),
#   DAGGER (a model: DAGGER_PROCS (10) of the PROCS shards record DAgger episodes of it, S2 until it stops, then the oracle;
#   DAGGER_STOP_WITHIN (m, 0: off): the expert says STOP at a decision that close to the goal),
#   TOTAL_S (size the schedule for this many training seconds, of which this call trains TRAIN_S; the next call, with
#   RESUME=1 and within 30 s, goes on with it), STEPS (the schedule's steps, no probe: run 4's probes measured 148.5 and
#   167.9 samples/s where the runs trained at about 250), STOP_REPEAT (2), PGR (pixel-goal repeat, 2), TURN_REPEAT (1), CUDA_TESTS=1 (the fast path's CUDA tests, on the GPU
#   while the CPUs record; cuda_tests.log), EVAL_AFTER=1 (then the held-out split with the exported model, and
#   EVAL_BASELINE (a model) beside it, PROCS shards of internvla-s2-eval --s2-mode engine; eval.tgz; about 60-80 s each)
# LOCAL=1 skips the device's GL and package setup (a CPU smoke run: LOCAL=1 REC_S=20 TRAIN_S=5 BATCH=4 OUT=/tmp/o).
# At most 8 files come back: call.log, logs.txt, (DIAG=1) train_step.md and the model parts (its folder holds
# train_log.jsonl and data_report.json). EPOCHS (6) caps the steps at that many passes over the samples.
set -uo pipefail
T0=$(date +%s); W=${W:-runs/nav_device}; mkdir -p "$W"
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ -z "${LOCAL:-}" ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
    nvidia_egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [ -e /usr/share/glvnd/egl_vendor.d/10_nvidia.json ] || [ ! -e $nvidia_egl ] || export __EGL_VENDOR_LIBRARY_FILENAMES=$nvidia_egl
    mkdir -p /tmp/site && tar -xJf .gpu_nav/site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD
fi
LOG=$OUT/logs.txt
[ -d "$W/houses" ] || tar -xzf .gpu_nav/houses.tgz -C "$W"
el() { echo "t=$(( $(date +%s) - T0 ))s $*" | tee -a "$OUT/call.log"; }
if [ ! -f "$W/init/model.safetensors" ]; then  # the shipped model's config and tokenizer, seeded random weights
    mkdir -p "$W/init" && for f in config.json generation_config.json merges.txt vocab.json tokenizer_config.json \
        processor_config.json chat_template.jinja; do cp "internvla_s2_node/assets/navigator/$f" "$W/init/"; done
    python3 -m internvla_s2_node.train.small_model "$W/init" --weights-only --seed 0 >> "$LOG" 2>&1
fi
el "setup done"
if [ -n "${RESUME:-}" ] && [ ! -f "$W/run/training_state.pt" ]; then
    el "RESUME: no $W/run/training_state.pt (a fresh machine: the last call ended more than 30 s ago); nothing to resume"; exit 3
fi
if [ -n "${CUDA_TESTS:-}" ]; then  # core.tiny's tokenizer from the navigator's (same vocabulary), then the CUDA tests
    ( export INTERNVLA_S2_CACHE=/tmp/s2cache OMP_NUM_THREADS=4
      python3 benchmarks/step_variants.py --bpe-from internvla_s2_node/assets/navigator --out /tmp/s2cache/qwen-bpe-v1/tokenizer.json
      python3 -m pytest tests/test_fast_generation.py tests/test_vision_attention.py -q -k "cuda or tower_features" -p no:cacheprovider
    ) > "$OUT/cuda_tests.log" 2>&1 &
    TESTS_PID=$!
fi
[ -d "$W/data" ] || python3 scripts/train_navigator.py record --work "$W" --procs "${PROCS:-16}" --record-seconds "${REC_S:-300}" \
    ${FIRST_SEED:+--record-first-seed "$FIRST_SEED"} ${PERTURB:+--perturb "$PERTURB"} \
    ${DAGGER:+--dagger-model "$DAGGER" --dagger-procs "${DAGGER_PROCS:-10}" --dagger-stop-within "${DAGGER_STOP_WITHIN:-0}"} >> "$LOG" 2>&1
el "recorded: $(grep 'record: stopped' "$LOG" | tail -1)"
TRAIN=(--work "$W" --init-from "${INIT:-$W/init}" --sample-step 2 --stop-repeat "${STOP_REPEAT:-2}" --pixel-goal-repeat "${PGR:-2}"
       --turn-repeat "${TURN_REPEAT:-1}"
       --workers "${WORKERS:-15}" --lr "${LR:-1.5e-3}" ${RESUME:+--resume} ${STEPS:+--steps "$STEPS"})
[ -n "${TESTS_PID:-}" ] && { wait "$TESTS_PID"; el "CUDA tests: $(tail -1 "$OUT/cuda_tests.log")"; }
if [ -n "${DIAG:-}" ]; then  # where a step's time goes (loader, copy, step), before training
    python3 benchmarks/train_step.py --data "$W/data" --model "$W/init" --frame-cache "$W/frame_cache" --batch "${BATCH:-64}" \
        --workers "${WORKERS:-15}" --batches 8 --out /tmp/train_step >> "$LOG" 2>&1
    cp /tmp/train_step/train_step_b*.md "$OUT/train_step.md" 2>/dev/null
    el "step diagnosis: $(grep -A4 samples_per_s "$OUT/train_step.md" | tr -d '\n ')"
fi
# Steps sized by train_navigator.py's 40-step probe (which also fills the frame cache), --time-limit the backstop.
python3 scripts/train_navigator.py train "${TRAIN[@]}" --train-seconds "${TOTAL_S:-${TRAIN_S:-150}}" --max-epochs "${EPOCHS:-6}" \
    --batch "${BATCH:-64}" --checkpoints 3 --time-limit "${TRAIN_S:-150}" >> "$LOG" 2>&1
el "trained: $(grep -E 'training rate|^train:' "$LOG" | tr '\n' ' ')"
python3 scripts/train_navigator.py export --work "$W" --export-dir "$W/export" >> "$LOG" 2>&1
tar -C "$W/export" -cf - . | split -b 15m - "$OUT/model.tar.part-"
if [ -n "${EVAL_AFTER:-}" ]; then  # the exported model (and EVAL_BASELINE, a model) on the held-out split, no ROS
    for m in "$W/export=trained" ${EVAL_BASELINE:+"$EVAL_BASELINE=baseline"}; do
        python3 scripts/train_navigator.py evaluate --work "$W" --procs "${PROCS:-16}" --eval-model "${m%=*}" \
            --eval-name "${m##*=}" ${EVAL_LIMIT:+--eval-limit "$EVAL_LIMIT"} >> "$LOG" 2>&1
        el "held-out, ${m##*=}: $(grep '^| s2' "$W/eval/${m##*=}/summary.md")"
    done
    tar -C "$W" -czf "$OUT/eval.tgz" eval
fi
el "done"
