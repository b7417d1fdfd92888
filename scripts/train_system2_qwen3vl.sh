#!/usr/bin/env bash
# Fine-tune the InternVLA-N1 System-2 model on Qwen3-VL with torchrun + DeepSpeed (ZeRO-2 by default; plain DDP without DeepSpeed),
# across the GPUs of one or several nodes. Run it on every node with the same settings and its NODE_RANK:
#
#   MODEL_SIZE=8B DATA=traj_data/r2r,traj_data/rxr NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 \
#       bash scripts/train_system2_qwen3vl.sh [extra internvla-s2-train options]
#
# Environment (defaults in brackets):
#   MODEL_SIZE [8B]       2B, 4B, 8B or 32B: Qwen/Qwen3-VL-${MODEL_SIZE}-Instruct
#   MODEL []              a local checkpoint directory instead (overrides MODEL_SIZE)
#   DATA [traj_data/r2r]  comma-separated data folders; PATH@HEIGHT_CM,FRONT_PITCH,DOWN_PITCH sets a camera setup
#   OUTPUT_DIR [runs/s2_qwen3vl_${MODEL_SIZE}]
#   DS_CONFIG [scripts/ds_zero2.json]  or scripts/ds_zero3.json / scripts/ds_zero3_offload.json (32B, little GPU memory).
#                         DeepSpeed comes from requirements-gpu.txt; without it, and with DS_CONFIG unset,
#                         the script trains with plain DDP (torchrun) and says so. DS_CONFIG=none: plain DDP.
#   NNODES [1] NODE_RANK [0] MASTER_ADDR [127.0.0.1] MASTER_PORT [29500] NPROC_PER_NODE [GPUs on this node]
#   LR [2e-5] VISION_LR [5e-6] BATCH_SIZE [2 per GPU] GRAD_ACCUM [1] EPOCHS [1] MIN_PIXELS [3136] MAX_PIXELS [313600]
#   PYTHON [.venv/bin/python if present, else python3]
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_SIZE=${MODEL_SIZE:-8B}
MODEL=${MODEL:-}
DATA=${DATA:-traj_data/r2r}
OUTPUT_DIR=${OUTPUT_DIR:-runs/s2_qwen3vl_${MODEL_SIZE}}
ZERO_ASKED=${DS_CONFIG:+yes}
DS_CONFIG=${DS_CONFIG:-scripts/ds_zero2.json}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
if [ -z "${NPROC_PER_NODE:-}" ]; then
    NPROC_PER_NODE=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    [ "${NPROC_PER_NODE:-0}" -ge 1 ] || NPROC_PER_NODE=1
fi
LR=${LR:-2e-5}
VISION_LR=${VISION_LR:-5e-6}
BATCH_SIZE=${BATCH_SIZE:-2}
GRAD_ACCUM=${GRAD_ACCUM:-1}
EPOCHS=${EPOCHS:-1}
MIN_PIXELS=${MIN_PIXELS:-3136}
MAX_PIXELS=${MAX_PIXELS:-313600}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

model_args=(--model-size "$MODEL_SIZE")
if [ -n "$MODEL" ]; then model_args=(--model "$MODEL"); fi
data_args=()
IFS=, read -ra data_dirs <<< "$DATA"
for d in "${data_dirs[@]}"; do data_args+=(--data "$d"); done

has_module() { "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }
if ! has_module torch; then
    echo "train_system2_qwen3vl.sh: torch is not installed for $PYTHON; run bash scripts/setup.sh (or set PYTHON)" >&2
    exit 1
fi
ds_args=(--deepspeed "$DS_CONFIG")
engine="DeepSpeed ${DS_CONFIG}"
if [ "$DS_CONFIG" = none ]; then
    ds_args=(); engine="plain DDP"
elif ! has_module deepspeed; then
    if [ -n "$ZERO_ASKED" ]; then
        echo "train_system2_qwen3vl.sh: DS_CONFIG=$DS_CONFIG needs DeepSpeed, which is not installed; pip install -r requirements-gpu.txt, or unset DS_CONFIG for plain DDP" >&2
        exit 1
    fi
    ds_args=(); engine="plain DDP (DeepSpeed is not installed: pip install -r requirements-gpu.txt for ZeRO)"
elif [ ! -f "$DS_CONFIG" ]; then
    echo "train_system2_qwen3vl.sh: DS_CONFIG=$DS_CONFIG: no such file; use scripts/ds_zero2.json, ds_zero3.json or ds_zero3_offload.json" >&2
    exit 1
fi

echo "S2 training: Qwen3-VL ${MODEL:-$MODEL_SIZE}, ${NNODES} node(s) x ${NPROC_PER_NODE} process(es), node ${NODE_RANK}, ${engine}"
exec "$PYTHON" -m torch.distributed.run \
    --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC_PER_NODE" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    -m internvla_s2_node.train.cli \
    "${model_args[@]}" "${data_args[@]}" \
    "${ds_args[@]}" \
    --output-dir "$OUTPUT_DIR" \
    --bf16 --gradient-checkpointing \
    --tune-vision --tune-merger --tune-llm \
    --learning-rate "$LR" --vision-lr "$VISION_LR" \
    --lr-scheduler cosine --warmup-ratio 0.003 --weight-decay 0 --max-grad-norm 1 \
    --per-device-batch-size "$BATCH_SIZE" --grad-accum "$GRAD_ACCUM" --epochs "$EPOCHS" \
    --num-history 8 --sample-step 4 --num-future-steps 4 --resize-w 384 --resize-h 384 \
    --min-pixels "$MIN_PIXELS" --max-pixels "$MAX_PIXELS" \
    --num-workers 8 --logging-steps 1 --save-steps 5000 --save-total-limit 5 \
    "$@"
