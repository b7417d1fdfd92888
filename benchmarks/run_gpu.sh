#!/usr/bin/env bash
# What one device call runs: the step benchmark, then the CUDA-graph equivalence tests (tiny models, fp32).
# Needs the ignored folder .cache/s2bench (tokenizer + converted BPE; see benchmarks/README.md) carried along.
set -u
OUT=${OUT:-benchmarks/results}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export INTERNVLA_S2_CACHE=$PWD/.cache/s2bench/cache
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu --format=csv -lms 1000 > "$OUT/gpu_clocks.csv" &
SMI=$!
$PY benchmarks/s2_step.py --sizes "${SIZES:-8B,2B}" --steps "${STEPS:-40}" --warmup-steps 10 --new-tokens 10 \
    --tokenizer .cache/s2bench/tokenizer --out "$OUT" ${BENCH_ARGS:---profile} 2>&1 | grep -v -i warn | tee "$OUT/s2_step.log"
kill $SMI
# CUDA-graph equivalence tests (tiny models, float32: tokens must equal the plain path's exactly)
timeout "${TEST_TIMEOUT:-150}" $PY -m pytest tests/test_fast_generation.py -q -x -k cuda -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/cuda_tests.log"
