"""Fast S2 generation: the same greedy answer as ``PlainGenerator``, without its repeated work.

What the plain way (processor + ``model.generate``) redoes at every step, and what we do instead:

* **Image preprocessing.** Each frame is preprocessed once (``image_processor`` on that frame alone
  gives the rows the processor gives it in a batch) and kept under its key (episode frame index); on
  CUDA the processor runs on the GPU for frame sizes where that gives bit-identical pixels (checked on
  the first frame of each size). The prompt's token ids come from tokenizing the chat text with one
  ``<|image_pad|>`` per image and expanding each to the frame's token count, as the processor does.
  The chat text (keyed by the messages without their image objects) and the tokenizer's ids (keyed by
  the text) are memoized, as a steady episode repeats them: 0.8-1.1 ms p50 of host time per step on the
  2-core CPU (``benchmarks/results/e2e_dds_cpu_2026-12-02_navigator.md``).
* **Vision encoding.** The vision tower attends within each image (``cu_seqlens``; Qwen2.5-VL's
  windows lie inside an image too), so a frame's features do not depend on the other frames. Each
  frame is encoded once, by the model's own tower, and its merged tokens and (Qwen3-VL) deepstack
  features are cached (LRU, ``cache_frames``): one new frame per step in an episode. On CUDA each
  vision block is replayed from a CUDA graph (its ``cu_seqlens`` given as a host tensor, so the
  block's per-image split does not wait on the device). With sdpa vision attention (``vision_grouped``,
  on by default) the segments a block attends within (the image; Qwen2.5-VL's windows: 16 per 384x384
  frame, of 64, 32 and 16 patches) attend in one batched call per distinct length
  (``core.vision_attention``, shared with training) instead of one call per window; exact (features
  bit-equal in the CPU tests), and captured in the block graphs like the rest (the grouping follows
  the host ``cu_seqlens``, so it is fixed per frame shape). On an H200 it took Qwen2.5-VL's tower from
  16.86 to 15.53 ms per frame (same results file as prefix reuse below).
* **Prefill.** The model's own embedding, decoder layers, norm and lm_head run over the prompt (image
  features scattered in at the image-pad positions, deepstack features added after the first decoder
  layers at the image positions, mrope positions from the model's own ``get_rope_index``, memoized per
  prompt and computed while the tower runs), as ``Qwen*VLModel.forward`` does, but written so that
  nothing waits on the device (inputs uploaded from pinned memory): the prompt is padded
  at its end to a bucket of 64 tokens (causal attention: real tokens never see the padding), its K/V go
  into a preallocated static cache, and on CUDA the prefill is compiled once (dynamic length)
  and replayed from one CUDA graph per bucket.
* **Prefix reuse** (``prefix_reuse=True``; the engine's default, ``FastGenerator``'s is off; sdpa and
  eager). The prompt's leading positions that equal the last prompt's (same tokens, and the same cached
  frames at its image tokens: the text before the first frame, frame 0, the history frames up to the
  first that changed, a look-down turn's whole first turn) keep their K/V; only the rest, from a bucket
  boundary, is prefilled. As in decoding, the kept length is device data (``_start``): the rows' K/V are
  written at device positions (``index_copy_``), their text positions follow it, and their queries are
  masked over the whole static cache (causal from the kept prefix on), so one prefill graph per bucket of
  prefilled rows serves every kept length and instruction; prompts without a kept prefix keep their own
  graphs, unchanged. ``last_prefix`` and the stats ``prefix_tokens_reused`` / ``prompt_tokens`` give the
  hit per call. The engine's background warm-up (``core.warmup``: with num_history 8, 10 requests once the camera's
  size is known, with or without reuse) then captures every bucket, after a kept prefix and from position 0
  (without reuse: from position 0), up to its
  longest prompt plus ``settings.INSTRUCTION_MARGIN`` tokens (within the cache): after it, episodes with
  other instructions, shorter or longer, and the first fast call after the switch from the plain path,
  capture no prefill graph (CPU test with stand-in graphs). Measured on an H200 (8B, random weights, bf16,
  ``benchmarks/results/startup_nvidia-h200_2026-12-03_run5.md``): step p50 78.7 ms against 87.0-88.8 ms
  without, p90 86.8-99.6 against 94.0-94.5 ms, no prefill graph captured in the measured steps; the build
  took 17.2 s on a warm compile cache (8.8 s without). Tokens: equal to the plain path's in float32 (CPU
  tests, and the CUDA tests on that call); with the trained navigator (101 replayed calls, same call) the
  fast path's tokens on 101 of 101 in float32 and 100 of 101 in bf16.
* **Decoding.** One fixed-shape step (embedding, decoder layers over the static cache with a mask,
  norm, lm_head, greedy argmax, the repetition penalty when the generation config asks for one) whose
  state lives on the device; on CUDA it is compiled (elementwise ops fused, a fused masked attention,
  one GEMV for q/k/v and one for gate/up, their weights re-laid as views of one tensor) and captured in
  a CUDA graph. The next step is queued before the previous token is read, so the GPU never waits for
  the host between tokens; after an end token one queued step is scratch work.

Nothing is batched that could change the answer; what differs from the plain path is floating-point
rounding (a frame encoded alone vs. in a batch, a padded prompt, a masked static cache, fused kernels).
In float32 the tokens agree exactly in the tests (CPU, and CUDA with graphs and compilation); in bf16,
near-ties of random-weight models flip now and then (``benchmarks/README.md`` reports the rate).
Anything that fails to compile or capture falls back to running eagerly, with one logged reason
(``FastGenerator.failures``).

Compiling: by default (``compile_scope="layer"``) one decoder layer is compiled and that code serves
every layer (weights are inputs; each layer has its own cache object and ``layer_idx`` 0 in the fast
path's own copies of the layers), once for prefill and once for decode; embedding, norm and head run
eagerly inside the same CUDA graph, so the Python around the layers costs nothing at replay, and the
cold compile costs one layer's instead of all of them. ``"model"`` compiles each whole step.
The model's own modules are never changed, so the fast path can be built in a thread while the plain
path serves (``core.warm_start``); compiled artifacts persist across starts (``core.compile_cache``).

Files (one job each):

* ``generator.py``: ``FastGenerator`` (``generate`` / ``reset``) and ``make_fast_generator``.
* ``settings.py``: what the fast path serves (attention kinds, greedy generation settings) and its sizes.
* ``frames.py``: the frame cache and image preprocessing.
* ``vision.py``: the vision tower on new frames, its blocks replayed from CUDA graphs.
* ``prompt_inputs.py``: token ids, mrope positions, the padded bucket, uploaded without a sync.
* ``kv.py``: the static KV cache and the other static device buffers.
* ``prefill.py``: the prompt through the text model (compiled, one graph per bucket, and one per bucket
  after a kept prefix).
* ``decode.py``: the one-token step (decode attention, compiled, one graph).
* ``fused.py``: fused q/k/v and gate/up projections for decoding.
* ``tokens.py``: the next token (lm_head, penalty, argmax) and reading tokens back.
* ``graphs.py``: CUDA-graph capture helpers (and the CPU stand-in the tests use).
"""

from .decode import DECODE_ATTENTION, DECODE_ATTENTION_TRITON
from .generator import FastGenerator, make_fast_generator
from .settings import FastPathUnavailable

__all__ = ["DECODE_ATTENTION", "DECODE_ATTENTION_TRITON", "FastGenerator", "FastPathUnavailable", "make_fast_generator"]
