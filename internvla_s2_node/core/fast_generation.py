"""Fast S2 generation: the same greedy answer as ``PlainGenerator``, without its repeated work.

What the plain way (processor + ``model.generate``) redoes at every step, and what we do instead:

* **Image preprocessing.** Each frame is preprocessed once (``image_processor`` on that frame alone
  gives the rows the processor gives it in a batch) and kept under its key (episode frame index); on
  CUDA the processor runs on the GPU for frame sizes where that gives bit-identical pixels (checked on
  the first frame of each size). The prompt's token ids come from tokenizing the chat text with one
  ``<|image_pad|>`` per image and expanding each to the frame's token count, as the processor does.
* **Vision encoding.** The vision tower attends within each image (``cu_seqlens``; Qwen2.5-VL's
  windows lie inside an image too), so a frame's features do not depend on the other frames. Each
  frame is encoded once, by the model's own tower, and its merged tokens and (Qwen3-VL) deepstack
  features are cached (LRU, ``cache_frames``): one new frame per step in an episode. On CUDA each
  vision block is replayed from a CUDA graph (its ``cu_seqlens`` given as a host tensor, so the
  block's per-image split does not wait on the device).
* **Prefill.** The model's own embedding, decoder layers, norm and lm_head run over the prompt (image
  features scattered in at the image-pad positions, deepstack features added after the first decoder
  layers at the image positions, mrope positions from the model's own ``get_rope_index``, memoized per
  prompt and computed while the tower runs), as ``Qwen*VLModel.forward`` does, but written so that
  nothing waits on the device (inputs uploaded from pinned memory): the prompt is padded
  at its end to a bucket of 64 tokens (causal attention: real tokens never see the padding), its K/V go
  into a preallocated static cache, and on CUDA the whole prefill is compiled once (dynamic length)
  and replayed from one CUDA graph per bucket.
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
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import gc
import inspect
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from .generation import Generated

log = logging.getLogger(__name__)

# Prefill runs the model's attention (flash kernels included: no mask needed, causal); the one-token
# decode step runs sdpa (eager for eager models) over the static cache, whose unwritten tail only a
# mask can hide.
SUPPORTED_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")
DEFAULT_CACHE_FRAMES = 256
PREFILL_BUCKET = 64  # prompts are padded at the end to a multiple of this (one prefill graph per bucket)
ROPE_MEMO = 32  # prompts whose mrope positions are kept (an episode repeats a few)
CAPACITY_STEP = 1024  # static KV cache length grows in these steps (decode graph recaptured then)

_UNSUPPORTED_GENERATION = {
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "min_new_tokens": None,
    "guidance_scale": None,
}


class FastPathUnavailable(RuntimeError):
    """The fast path cannot serve this backbone; the message says why."""


@dataclasses.dataclass
class _FrameEntry:
    grid: tuple[int, int, int]
    n_tokens: int
    size: tuple[int, int] | None
    pixels: torch.Tensor | None = None  # on the device, model dtype; dropped once encoded
    feats: tuple[torch.Tensor, list[torch.Tensor]] | None = None  # merged tokens, deepstack features


@dataclasses.dataclass
class _Prompt:
    length: int
    bucket: int
    delta: int  # mrope position minus text position, for the decode steps
    n_image_tokens: int
    device_rows: torch.Tensor  # [5, bucket] on the device: ids, 3 mrope rows, image-token index


def _greedy_settings(model) -> tuple[set[int], float]:
    """EOS ids and repetition penalty of greedy ``generate`` with this model's generation config."""
    gc_ = getattr(model, "generation_config", None)
    if gc_ is None:
        return set(), 1.0
    for name, neutral in _UNSUPPORTED_GENERATION.items():
        value = getattr(gc_, name, neutral)
        if value not in (neutral, None, 0, [], ()) and not (name.endswith("penalty") and value == 1.0):
            raise FastPathUnavailable(f"generation config sets {name}={value!r}, which the fast path does not apply")
    if (getattr(gc_, "min_length", 0) or 0) > 1:
        raise FastPathUnavailable(f"generation config sets min_length={gc_.min_length}")
    eos = gc_.eos_token_id
    eos_ids = set() if eos is None else ({int(eos)} if isinstance(eos, int) else {int(e) for e in eos})
    penalty = float(getattr(gc_, "repetition_penalty", 1.0) or 1.0)
    return eos_ids, penalty


def _attn_implementation(config) -> str:
    return getattr(config, "_attn_implementation", None) or "eager"


# ---------------------------------------------------------------------------------------------- graphs
class _Graph:
    """A captured CUDA graph and the output its capture produced (overwritten by each replay)."""

    def __init__(self, graph, out) -> None:
        self.graph, self.out = graph, out

    def replay(self):
        self.graph.replay()
        return self.out


class _FakeGraph:
    """CPU stand-in for tests: replays by running the function and copying into the first output,
    so that the static-buffer plumbing around graphs is exercised where CUDA is absent."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.out = fn()

    def replay(self):
        _copy_into(self.out, self.fn())
        return self.out


def _copy_into(dst, src) -> None:
    if isinstance(dst, torch.Tensor):
        dst.copy_(src)
    elif isinstance(dst, (tuple, list)):
        for d, s in zip(dst, src):
            _copy_into(d, s)


class _DoneEvent:
    """CPU stand-in for a CUDA event (work on the CPU is done when it returns)."""

    def record(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


class _PoolHolder:
    """The memory pool a generator's graphs share (they are replayed one at a time, and their results
    are read right after a replay or live in buffers allocated outside the pool). A new pool is taken
    whenever all graphs may have been dropped (a pool nobody uses any more can't be captured into)."""

    def __init__(self) -> None:
        self.handle = None

    def get(self):
        if self.handle is None:
            self.handle = torch.cuda.graph_pool_handle()
        return self.handle

    def renew(self) -> None:
        self.handle = None


def _capture(fn: Callable[[], Any], device: torch.device, fake: bool, pool: _PoolHolder | None = None, warm: Callable[[], Any] | None = None, warmup: int = 2):
    """``fn`` captured in a CUDA graph after ``warmup`` runs of ``warm`` (default ``fn``) on a side stream."""
    if fake:
        return _FakeGraph(fn)
    warm = warm or fn
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            warm()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool.get() if pool is not None else None, capture_error_mode="thread_local"):
        out = fn()
    return _Graph(graph, out)


class _BlockGraphs:
    """Replaces a vision block's ``forward`` on the instance. While a fast generator encodes frames
    (``active``), the block is replayed from a CUDA graph per input shape, with ``cu_seqlens`` as a
    host tensor (the block only splits by it); otherwise it passes straight through."""

    local = threading.local()

    def __init__(self, block: torch.nn.Module) -> None:
        self.original = block.forward
        self._compiled = None

    def _forward(self, ctx):
        if not ctx.compile:
            return self.original
        if self._compiled is None:  # one compile serves every block (same code, weights as inputs)
            self._compiled = torch.compile(self.original, dynamic=False)
        return self._compiled

    @classmethod
    def install(cls, block: torch.nn.Module) -> _BlockGraphs:
        existing = getattr(block, "_s2_block_graphs", None)
        if existing is not None:
            return existing
        runner = cls(block)
        block.forward = runner
        block._s2_block_graphs = runner
        return runner

    def __call__(self, hidden_states, *args, **kwargs):
        ctx = getattr(self.local, "ctx", None)
        cu = kwargs.get("cu_seqlens")
        pe = kwargs.get("position_embeddings")
        if ctx is None or args or cu is None or not isinstance(pe, tuple):
            return self.original(hidden_states, *args, **kwargs)
        cu_host = ctx.host_copy(cu)
        rest = {k: v for k, v in kwargs.items() if k not in ("cu_seqlens", "position_embeddings")}
        if any(isinstance(v, torch.Tensor) for v in rest.values()):
            return self.original(hidden_states, *args, **kwargs)
        key = (id(self), ctx.compile, tuple(hidden_states.shape), hidden_states.dtype, tuple(cu_host.tolist()), tuple(p.shape for p in pe), tuple(sorted(rest.items())))
        entry = ctx.graphs.get(key)
        if entry is None:
            h_buf = hidden_states.clone()
            pe_buf = tuple(p.clone() for p in pe)
            fn = self._forward(ctx)
            graph = _capture(lambda: fn(h_buf, cu_seqlens=cu_host, position_embeddings=pe_buf, **rest), ctx.device, ctx.fake, ctx.pool)
            entry = ctx.graphs[key] = (graph, h_buf, pe_buf)
            ctx.stats["vision_graphs_captured"] += 1
        graph, h_buf, pe_buf = entry
        h_buf.copy_(hidden_states)
        for b, p in zip(pe_buf, pe):
            if b.data_ptr() != p.data_ptr():
                b.copy_(p)
        return graph.replay()


class _VisionGraphContext:
    """What the block wrappers need during one tower call of a generator (its graphs, pool, stats)."""

    def __init__(self, device: torch.device, fake: bool, stats, graphs: dict, pool: _PoolHolder, compile: bool = False) -> None:
        self.device, self.fake, self.stats, self.graphs, self.pool = device, fake, stats, graphs, pool
        self.compile = compile
        self._host: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def host_copy(self, t: torch.Tensor) -> torch.Tensor:
        hit = self._host.get(id(t))
        if hit is None or hit[0] is not t:
            hit = self._host[id(t)] = (t, t.detach().to("cpu"))
        return hit[1]


# --------------------------------------------------------------------------------- decode attention
DECODE_ATTENTION = "s2_decode"


def _decode_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention of a few query tokens over the static cache: plain matmuls and a masked fp32 softmax
    (which ``torch.compile`` fuses), grouped-query heads folded into the query rows.

    ``attention_mask``: bool ``[1, 1, 1, S]``, True where a slot may be attended. Returns
    ``([B, q, H, d], None)`` like the transformers attention functions.
    """
    b, h, q, d = query.shape
    kv_heads = key.shape[1]
    groups = h // kv_heads
    scale = scaling if scaling is not None else d**-0.5
    qg = query.reshape(b, kv_heads, groups * q, d)
    scores = torch.matmul(qg, key.transpose(-1, -2)).float() * scale
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs, value).reshape(b, h, q, d)
    return out.transpose(1, 2).contiguous(), None


_registered = False


def _register_decode_attention() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(DECODE_ATTENTION, _decode_attention_forward)
        _registered = True


# ------------------------------------------------------------------------------------ fused q/k/v
class _Call(torch.nn.Module):
    """A stand-in child module (``q_proj`` & co.) that calls ``fn``."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _FusedProjections:
    """One GEMV for several projections of the same input during decoding (q/k/v of an attention,
    gate/up of an MLP: small GEMVs are launch-bound). The modules' weights become row views into one
    fused weight, so this costs no memory and the plain path reads the same values. Stand-ins replace
    the modules while decoding: whichever is called first with an input computes all outputs for that
    input, the others take theirs (any call order)."""

    QKV = ("q_proj", "k_proj", "v_proj")
    GATE_UP = ("gate_proj", "up_proj")

    def __init__(self, parent: torch.nn.Module, names: tuple[str, ...]) -> None:
        mods = [getattr(parent, n) for n in names]
        biases = [m.bias for m in mods]
        if any(b is None for b in biases) and not all(b is None for b in biases):
            raise FastPathUnavailable(f"{'/'.join(names)} projections mix bias and no bias")
        self.parent, self.names, self.originals = parent, names, mods
        self.sizes = [m.weight.shape[0] for m in mods]
        self.weight = self._fuse([m.weight for m in mods])
        self.bias = None if biases[0] is None else self._fuse(biases)
        self.proxies = tuple(_Call(functools.partial(self._project, i)) for i in range(len(mods)))
        self._input = None
        self._outputs: tuple = ()

    @staticmethod
    def _fuse(params: list[torch.nn.Parameter]) -> torch.Tensor:
        fused = torch.cat([p.detach() for p in params], dim=0)
        start = 0
        for p in params:
            p.data = fused[start : start + p.shape[0]]
            start += p.shape[0]
        return fused

    def _project(self, i: int, x):
        if self._input is not x:
            self._outputs = torch.nn.functional.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
            self._input = x
        return self._outputs[i]

    def swap_in(self) -> None:
        for name, proxy in zip(self.names, self.proxies):
            self.parent._modules[name] = proxy

    def swap_out(self) -> None:
        for name, module in zip(self.names, self.originals):
            self.parent._modules[name] = module
        self._input, self._outputs = None, ()


def _fuse_layers(layers, fuse_mlp: bool) -> list[_FusedProjections]:
    fused = []
    for layer in layers:
        for parent, names in ((getattr(layer, "self_attn", None), _FusedProjections.QKV), (getattr(layer, "mlp", None), _FusedProjections.GATE_UP)):
            if parent is None or (names is _FusedProjections.GATE_UP and not fuse_mlp):
                continue
            if all(isinstance(getattr(parent, n, None), torch.nn.Linear) for n in names):
                fused.append(_FusedProjections(parent, names))
    return fused


# ----------------------------------------------------------------------------------------- KV caches
class _StaticKV:
    """Cache object handed to the decoder layers. Prefill (``pos`` None): the prompt's K/V are written
    at ``[0, n)`` and returned as they are. Decode: one token's K/V written at ``pos``, the first
    ``span`` slots returned (the mask hides what is beyond the current position)."""

    def __init__(self, keys, values, pos: torch.Tensor | None = None, span: int = 0) -> None:
        self.keys, self.values, self.pos, self.span = keys, values, pos, span

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        k, v = self.keys[layer_idx], self.values[layer_idx]
        if self.pos is None:
            n = key_states.shape[2]
            k[:, :, :n].copy_(key_states)
            v[:, :, :n].copy_(value_states)
            return key_states, value_states
        k.index_copy_(2, self.pos, key_states.to(k.dtype))
        v.index_copy_(2, self.pos, value_states.to(v.dtype))
        return k[:, :, : self.span], v[:, :, : self.span]


# ------------------------------------------------------------------------------------------ generator
class FastGenerator:
    """Greedy generation with per-frame caches, a static KV cache and, on CUDA, graph-replayed
    prefill, decode and vision blocks. Same interface as ``generation.PlainGenerator``."""

    def __init__(
        self,
        backbone,
        max_new_tokens: int,
        cache_frames: int = DEFAULT_CACHE_FRAMES,
        cuda_graphs: bool | str | None = None,
        compile_decode: bool | None = None,
        compile_prefill: bool | None = None,
        decode_attention: str | None = None,
        vision_graphs: bool | None = None,
        fuse_qkv: bool | None = None,
        device_preprocess: bool | None = None,
        compile_vision: bool | None = None,
    ) -> None:
        self.backbone = backbone
        self.max_new_tokens = int(max_new_tokens)
        self.model = model = backbone.model
        self.processor = backbone.processor
        self.tokenizer = backbone.processor.tokenizer
        self.image_processor = backbone.processor.image_processor
        self.device = torch.device(backbone.device)
        self.dtype = backbone.dtype
        self.cache_frames = max(16, int(cache_frames))

        base = getattr(model, "model", None)
        visual = getattr(base, "visual", None)
        lm = getattr(base, "language_model", None)
        if visual is None or lm is None or not all(hasattr(lm, a) for a in ("layers", "embed_tokens", "norm", "rotary_emb")):
            raise FastPathUnavailable(f"{type(model).__name__} lacks model.visual / model.language_model.(layers, embed_tokens, norm, rotary_emb)")
        if not hasattr(base, "get_rope_index"):
            raise FastPathUnavailable(f"{type(base).__name__} has no get_rope_index")
        self.base, self.visual, self.lm = base, visual, lm
        text_cfg = getattr(model.config, "text_config", model.config)
        self.attn = _attn_implementation(text_cfg)
        if self.attn not in SUPPORTED_ATTENTION:
            raise FastPathUnavailable(f"attention implementation {self.attn!r} (fast path supports {SUPPORTED_ATTENTION})")
        self.decode_attn = decode_attention or DECODE_ATTENTION
        if self.decode_attn not in ("sdpa", "eager", DECODE_ATTENTION):
            raise ValueError(f"decode_attention must be 'sdpa', 'eager' or {DECODE_ATTENTION!r}, got {decode_attention!r}")
        if self.decode_attn == DECODE_ATTENTION:
            _register_decode_attention()
        self._attn_configs = list({id(c): c for c in (getattr(layer.self_attn, "config", None) for layer in lm.layers) if c is not None}.values())
        layer_types = getattr(text_cfg, "layer_types", None) or []
        if any(t != "full_attention" for t in layer_types) or getattr(text_cfg, "use_sliding_window", False):
            raise FastPathUnavailable("sliding-window attention layers")
        self.eos_ids, self.repetition_penalty = _greedy_settings(model)
        self.image_token_id = int(model.config.image_token_id)
        self.merge = int(getattr(model.config.vision_config, "spatial_merge_size", 2))
        self.n_layers = len(lm.layers)
        self.n_kv = int(text_cfg.num_key_value_heads)
        self.head_dim = int(getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // text_cfg.num_attention_heads)
        self.hidden = int(text_cfg.hidden_size)
        self.vocab = int(model.get_output_embeddings().weight.shape[0])
        self.is_moe = bool(getattr(text_cfg, "num_experts", 0) or getattr(text_cfg, "num_local_experts", 0))
        self._rope_params = set(inspect.signature(base.get_rope_index).parameters)

        cuda = self.device.type == "cuda"
        if cuda_graphs is None:
            cuda_graphs = cuda and not self.is_moe
            if cuda and self.is_moe:
                log.info("fast path: MoE routing is data-dependent, so the text model runs without CUDA graphs")
        self.fake_graphs = cuda_graphs == "fake"
        self.graphs = bool(cuda_graphs) and (cuda or self.fake_graphs)
        vision_attn = _attn_implementation(getattr(visual, "config", model.config.vision_config))
        if vision_graphs is None:
            vision_graphs = self.graphs and vision_attn in ("sdpa", "eager") and hasattr(visual, "blocks")
        self.vision_graphs = bool(vision_graphs) and hasattr(visual, "blocks")
        # Each vision block compiled (its elementwise ops fused) before its graph is captured.
        self.compile_vision = bool(compile_vision) and self.vision_graphs
        if compile_decode is None:
            compile_decode = cuda and self.graphs and not self.fake_graphs
        self.compile_decode = bool(compile_decode)
        if compile_prefill is None:
            compile_prefill = cuda and self.graphs and not self.fake_graphs
        self.compile_prefill = bool(compile_prefill)
        self._decode_fn: Callable[[int], None] = self._decode_layers
        self._prefill_fn: Callable[[int, int], None] = self._prefill_layers
        if self.compile_decode or self.compile_prefill:
            # Round where eager rounds (bf16 casts inside fused kernels), to stay close to the plain path.
            try:
                import torch._inductor.config as inductor_config

                options = {"emulate_precision_casts": True} if hasattr(inductor_config, "emulate_precision_casts") else None
            except ImportError:
                options = None
            if self.compile_decode:
                self._decode_fn = torch.compile(self._decode_layers, dynamic=False, options=options)
            if self.compile_prefill:  # one compile for all prompt lengths (captured per bucket)
                self._prefill_fn = torch.compile(self._prefill_layers, dynamic=True, options=options)
        if self.vision_graphs:
            for block in visual.blocks:
                _BlockGraphs.install(block)
        # Decode-time fused q/k/v and gate/up GEMVs (weights re-laid as views: no extra memory).
        if fuse_qkv is None:
            fuse_qkv = cuda
        self._fused: list[_FusedProjections] = _fuse_layers(lm.layers, fuse_mlp=not self.is_moe) if fuse_qkv else []
        # Image preprocessing on the GPU (torchvision backend), per frame size only where it gives the
        # CPU's exact pixel values (checked on the first frame of each size).
        self.device_preprocess = cuda if device_preprocess is None else bool(device_preprocess)
        self._device_pp_ok: dict[Any, bool] = {}

        self._lock = threading.Lock()  # guards the frame cache (reset() may come from another thread)
        self._generate_lock = threading.Lock()  # one generation at a time: the device state is shared
        self._epoch = 0
        self._frames: collections.OrderedDict[Hashable, _FrameEntry] = collections.OrderedDict()
        self._rope_memo: collections.OrderedDict[tuple, tuple[torch.Tensor, int]] = collections.OrderedDict()
        self.stats = collections.Counter()
        self.encoding = False  # True while the vision tower runs for this generator
        self.failures: dict[str, str] = {}  # graph/compile attempts that failed, and why (then eager)

        dev = self.device
        self._tok = torch.zeros(1, 1, dtype=torch.long, device=dev)  # next input token
        self._pos = torch.zeros(1, dtype=torch.long, device=dev)  # its position / KV slot
        self._delta = torch.zeros(1, dtype=torch.long, device=dev)  # mrope position minus text position
        self._last = torch.zeros(1, dtype=torch.long, device=dev)  # index of the prompt's last token
        self._seen = torch.zeros(self.vocab, dtype=torch.bool, device=dev)  # ids so far (repetition penalty)
        self._out = torch.zeros(1, dtype=torch.long, device=dev)
        self._host_tokens: torch.Tensor | None = None  # pinned copies of each step's token (CUDA)
        self._token_events: list = []
        self._capacity = 0
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._prefill_graphs: dict[int, Any] = {}
        self._decode_graph = None
        self._vision_graphs: dict[Any, Any] = {}
        self._pool = _PoolHolder()

    # ------------------------------------------------------------------ public interface
    def reset(self) -> None:
        with self._lock:
            self._epoch += 1
            self._frames = collections.OrderedDict()

    def generate(self, messages: list[dict[str, Any]], images: Sequence[Any], keys: Sequence[Hashable | None]) -> Generated:
        if len(keys) != len(images):
            raise ValueError(f"{len(images)} images but {len(keys)} keys")
        gc_enabled = gc.isenabled()
        with self._generate_lock, torch.inference_mode():
            if gc_enabled:
                gc.disable()  # no collector pause inside a step; it runs right after
            try:
                return self._generate(messages, images, keys)
            finally:
                if gc_enabled:
                    gc.enable()

    # ------------------------------------------------------------------ one call
    def _generate(self, messages, images, keys) -> Generated:
        t0 = time.perf_counter()
        with self._lock:
            epoch, frames = self._epoch, self._frames
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ta = time.perf_counter()
        entries = [self._entry(frames, key, image) for key, image in zip(keys, images)]
        tb = time.perf_counter()
        ids = self._token_ids(text, entries)
        t1 = time.perf_counter()
        events = None
        if self.device.type == "cuda":  # the tower's GPU time, without making the host wait for it
            events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            events[0].record()
        self._encode(entries)
        if events is not None:
            events[1].record()
        t2 = time.perf_counter()
        prompt = self._prompt_inputs(ids, entries)  # host work while the tower runs; uploaded without a sync
        self._prefill(prompt, entries)
        new_ids, t3 = self._read_tokens()
        t4 = time.perf_counter()
        with self._lock:
            if self._epoch == epoch:
                self._store(frames, keys, entries)
        decoded = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        self.stats["calls"] += 1
        self.stats["new_tokens"] += len(new_ids)
        vision = t2 - t1 if events is None else events[0].elapsed_time(events[1]) / 1e3
        timing = {
            "preprocess": t1 - t0,
            "preprocess_template": ta - t0,
            "preprocess_images": tb - ta,
            "preprocess_tokens": t1 - tb,
            "vision": vision,  # CUDA: the tower's GPU time (it overlaps host work of the prefill)
            "prefill": t3 - t1 - vision if events is not None else t3 - t2,
            "first_token": t3 - t0,
            "decode": t4 - t3,
            "generate": t4 - t1,
        }
        return Generated(decoded, new_ids, timing)

    # ------------------------------------------------------------------ frames
    def _entry(self, frames, key, image) -> _FrameEntry:
        size = getattr(image, "size", None)
        size = tuple(size) if isinstance(size, tuple) else None
        if key is not None:
            entry = frames.get(key)
            if entry is not None and entry.size == size:
                self.stats["frame_hits"] += 1
                return entry
        out = self._preprocess(image, size)
        grid = tuple(int(x) for x in out["image_grid_thw"][0].tolist())
        n_tokens = grid[0] * grid[1] * grid[2] // (self.merge**2)
        pixels = out["pixel_values"].to(device=self.device, dtype=self.dtype)
        self.stats["frames_preprocessed"] += 1
        return _FrameEntry(grid=grid, n_tokens=n_tokens, size=size, pixels=pixels)

    def _preprocess(self, image, size):
        ok = self._device_pp_ok.get(size) if self.device_preprocess else False
        if ok:
            return self.image_processor(images=[image], return_tensors="pt", device=str(self.device))
        out = self.image_processor(images=[image], return_tensors="pt")
        if ok is None:  # first frame of this size: does the device give the exact same pixels?
            try:
                dev = self.image_processor(images=[image], return_tensors="pt", device=str(self.device))
                same = torch.equal(dev["pixel_values"].to(out["pixel_values"].device), out["pixel_values"]) and torch.equal(
                    dev["image_grid_thw"].cpu(), out["image_grid_thw"].cpu()
                )
            except Exception as exc:  # noqa: BLE001 - a processor without device support
                log.info("fast path: image preprocessing stays on the CPU (%s)", exc)
                same = False
            self._device_pp_ok[size] = same
            self.stats["device_preprocess_sizes" if same else "cpu_preprocess_sizes"] += 1
        return out

    def _store(self, frames, keys, entries) -> None:
        for key, entry in zip(keys, entries):
            if key is None:
                continue
            entry.pixels = None
            frames[key] = entry
            frames.move_to_end(key)
        while len(frames) > self.cache_frames:
            frames.popitem(last=False)
            self.stats["frames_evicted"] += 1

    def _token_ids(self, text: str, entries: list[_FrameEntry]) -> list[int]:
        """The processor's input ids: one ``<|image_pad|>`` per image expanded to its token count."""
        raw = self.tokenizer(text)["input_ids"]
        ids: list[int] = []
        it = iter(entries)
        for tok in raw:
            if tok == self.image_token_id:
                entry = next(it, None)
                if entry is None:
                    raise ValueError("the chat text has more image placeholders than images")
                ids.extend([tok] * entry.n_tokens)
            else:
                ids.append(tok)
        if next(it, None) is not None:
            raise ValueError("more images than image placeholders in the chat text")
        return ids

    def _encode(self, entries: list[_FrameEntry]) -> None:
        """Run the model's vision tower on the frames not encoded yet (all of them in one call)."""
        misses = [e for e in entries if e.feats is None]
        if not misses:
            return
        pixels = torch.cat([e.pixels for e in misses], dim=0)
        grid = torch.tensor([e.grid for e in misses], dtype=torch.long, device=self.device)
        self.encoding = True
        try:
            merged, deep = self._run_tower(pixels, grid)
        finally:
            self.encoding = False
        self.stats["vision_calls"] += 1
        self.stats["frames_encoded"] += len(misses)
        sizes = [e.n_tokens for e in misses]
        merged_parts = torch.split(merged, sizes)
        deep_parts = [torch.split(d, sizes) for d in deep]
        for i, e in enumerate(misses):
            # Views into the tower's outputs: the mergers run eagerly, so these are fresh tensors (not a
            # block graph's static buffer) and need no copy.
            e.feats = (merged_parts[i], [d[i] for d in deep_parts])

    def _run_tower(self, pixels: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = None
        if self.vision_graphs and "vision" not in self.failures:
            _BlockGraphs.local.ctx = _VisionGraphContext(self.device, self.fake_graphs, self.stats, self._vision_graphs, self._pool, self.compile_vision)
            try:
                out = self.visual(pixels, grid_thw=grid)
            except Exception as exc:  # noqa: BLE001 - any capture trouble: encode eagerly from now on
                self._note_failure("vision", exc)
            finally:
                _BlockGraphs.local.ctx = None
        if out is None:
            out = self.visual(pixels, grid_thw=grid)
        if isinstance(out, torch.Tensor):  # older releases: the merged tokens alone
            return out, []
        if isinstance(out, tuple) and not hasattr(out, "pooler_output"):  # older Qwen3-VL: (merged, deepstack)
            return out[0], list(out[1] if len(out) > 1 and out[1] is not None else [])
        return out.pooler_output, list(getattr(out, "deepstack_features", None) or [])

    def _note_failure(self, what: str, exc: Exception) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.failures[what] = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("fast path: %s runs eagerly from now on (%s)", what, self.failures[what])

    # ------------------------------------------------------------------ static buffers
    def _ensure_capacity(self, need: int) -> None:
        if need <= self._capacity:
            return
        cap = max(2 * CAPACITY_STEP if self.device.type == "cuda" else PREFILL_BUCKET, -(-need // CAPACITY_STEP) * CAPACITY_STEP)
        dev, dt = self.device, self.dtype
        self._keys = [torch.zeros(1, self.n_kv, cap, self.head_dim, dtype=dt, device=dev) for _ in range(self.n_layers)]
        self._values = [torch.zeros_like(k) for k in self._keys]
        self._embeds = torch.zeros(1, cap, self.hidden, dtype=dt, device=dev)
        self._deep: list[torch.Tensor] = []
        self._mpos = torch.zeros(3, 1, cap, dtype=torch.long, device=dev)
        self._text_pos = torch.arange(cap, device=dev).view(1, cap)
        self._capacity = cap
        self._prefill_graphs.clear()
        self._decode_graph = None
        if not self._vision_graphs:
            self._pool.renew()

    def _deep_buffers(self, n: int) -> list[torch.Tensor]:
        while len(self._deep) < n:
            self._deep.append(torch.zeros(1, self._capacity, self.hidden, dtype=self.dtype, device=self.device))
        return self._deep[:n]

    # ------------------------------------------------------------------ prefill
    def _position_ids(self, ids: list[int], input_ids: torch.Tensor, grids: list[tuple[int, int, int]]) -> tuple[torch.Tensor, int]:
        """The three mrope rows ``[3, 1, L]`` from the model's ``get_rope_index``, and the decode offset.
        Memoized: within an episode the prompt's ids repeat (same instruction, same frame count)."""
        key = (tuple(ids), tuple(grids))
        hit = self._rope_memo.get(key)
        if hit is not None:
            self._rope_memo.move_to_end(key)
            self.stats["rope_hits"] += 1
            return hit
        grid = torch.tensor(grids, dtype=torch.long) if grids else None
        hit = self._rope_memo[key] = self._compute_position_ids(input_ids, grid)
        while len(self._rope_memo) > ROPE_MEMO:
            self._rope_memo.popitem(last=False)
        return hit

    def _compute_position_ids(self, input_ids: torch.Tensor, grid: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        if grid is None:
            pos = torch.arange(input_ids.shape[1]).view(1, 1, -1).expand(3, 1, -1)
            return pos, 0
        kwargs = {"image_grid_thw": grid, "attention_mask": torch.ones_like(input_ids)}
        if "mm_token_type_ids" in self._rope_params:
            kwargs["mm_token_type_ids"] = (input_ids == self.image_token_id).to(torch.int32)
        pos, deltas = self.base.get_rope_index(input_ids, **kwargs)
        return pos, int(deltas.reshape(-1)[0])

    def _prompt_inputs(self, ids: list[int], entries: list[_FrameEntry]) -> _Prompt:
        """Host side of the prefill: bucket, mrope positions (``get_rope_index``), image-token index; on
        the device as one upload that does not wait for the GPU (pinned memory)."""
        L = len(ids)
        bucket = -(-L // PREFILL_BUCKET) * PREFILL_BUCKET
        self._ensure_capacity(bucket + self.max_new_tokens)
        input_ids = torch.tensor([ids], dtype=torch.long)
        mpos, delta = self._position_ids(ids, input_ids, [e.grid for e in entries])
        # Pad at the end: token 0, positions continuing after the last one (real tokens never see them).
        pad = bucket - L
        last_pos = int(mpos.max()) if L else -1
        cuda = self.device.type == "cuda"
        host = torch.zeros(5, bucket, dtype=torch.long, pin_memory=cuda)
        host[0, :L] = input_ids[0]
        host[1:4, :L] = mpos[:, 0]
        host[1:4, L:] = torch.arange(last_pos + 1, last_pos + 1 + pad)
        img_pos = torch.nonzero(input_ids[0] == self.image_token_id).flatten()
        n_img = int(img_pos.numel())
        host[4, :n_img] = img_pos
        return _Prompt(L, bucket, delta, n_img, host.to(self.device, non_blocking=cuda))

    def _prefill(self, prompt: _Prompt, entries: list[_FrameEntry]) -> None:
        """Queue the prompt through the text model; its first token is read by ``_read_tokens``."""
        L, bucket, n_img, dev_host = prompt.length, prompt.bucket, prompt.n_image_tokens, prompt.device_rows
        dev_ids = dev_host[0:1]
        img_index = dev_host[4, :n_img]
        embeds = self.lm.embed_tokens(dev_ids)
        n_deep = 0
        if entries:
            merged = torch.cat([e.feats[0] for e in entries], dim=0).to(embeds.dtype)
            if merged.shape[0] != n_img:
                raise ValueError(f"image features ({merged.shape[0]}) and image tokens ({n_img}) do not match")
            embeds[0, img_index] = merged
            n_deep = len(entries[0].feats[1])
            for j, buf in enumerate(self._deep_buffers(n_deep)):
                buf[:, :bucket].zero_()
                buf[0, img_index] = torch.cat([e.feats[1][j] for e in entries], dim=0).to(buf.dtype)
        self._embeds[:, :bucket].copy_(embeds)
        self._mpos[:, :, :bucket].copy_(dev_host[1:4].unsqueeze(1))
        self._last.fill_(L - 1)
        if self.repetition_penalty != 1.0:
            self._seen.zero_()
            self._seen[dev_ids[0, :L]] = True
        run = self._prefill_runner(bucket, n_deep)
        run()
        self._pos.fill_(L)
        self._delta.fill_(prompt.delta)

    def _prefill_runner(self, bucket: int, n_deep: int) -> Callable[[], Any]:
        key = (bucket, n_deep)
        if not self.graphs or "prefill" in self.failures:
            return lambda: self._prefill_layers(bucket, n_deep)
        graph = self._prefill_graphs.get(key)
        if graph is None:
            if self._prefill_fn is not self._prefill_layers:
                try:
                    self._prefill_fn(bucket, n_deep)  # compiles on first use (idempotent: same inputs)
                except Exception as exc:  # noqa: BLE001
                    self._note_failure("compile_prefill", exc)
                    self._prefill_fn = self._prefill_layers
            try:
                graph = _capture(lambda: self._prefill_fn(bucket, n_deep), self.device, self.fake_graphs, self._pool)
            except Exception as exc:  # noqa: BLE001
                self._note_failure("prefill", exc)
                return lambda: self._prefill_layers(bucket, n_deep)
            self._prefill_graphs[key] = graph
            self.stats["prefill_graphs_captured"] += 1
        return graph.replay

    def _prefill_layers(self, bucket: int, n_deep: int) -> None:
        """The prompt through the text model (static buffers in, first token out); graph-capturable."""
        lm = self.lm
        h = self._embeds[:, :bucket]
        text_pos = self._text_pos[:, :bucket]
        position_embeddings = lm.rotary_emb(h, self._mpos[:, :, :bucket])
        mask = None  # sdpa / flash: causal without a mask
        if self.attn == "eager":
            mask = torch.full((bucket, bucket), torch.finfo(h.dtype).min, dtype=h.dtype, device=h.device).triu(1).view(1, 1, bucket, bucket)
        kv = _StaticKV(self._keys, self._values)
        deep = self._deep[:n_deep]
        for i, layer in enumerate(lm.layers):
            h = layer(h, attention_mask=mask, position_ids=text_pos, past_key_values=kv, use_cache=True, position_embeddings=position_embeddings)
            if isinstance(h, tuple):
                h = h[0]
            if i < n_deep:
                h = h + deep[i][:, :bucket]  # deepstack: zero rows except at the image tokens
        h = lm.norm(h)
        self._next_token(h.index_select(1, self._last)[:, -1, :])

    def _next_token(self, hidden_last: torch.Tensor) -> None:
        logits = self.model.lm_head(hidden_last).float()
        if self.repetition_penalty != 1.0:
            p = self.repetition_penalty
            logits = torch.where(self._seen.view(1, -1), torch.where(logits < 0, logits * p, logits / p), logits)
        nxt = torch.argmax(logits, dim=-1)
        self._out.copy_(nxt)
        self._tok.copy_(nxt.view(1, 1))
        if self.repetition_penalty != 1.0:
            self._seen.index_fill_(0, nxt, True)

    # ------------------------------------------------------------------ decode
    @contextlib.contextmanager
    def _decode_attention(self):
        """The layers set up for the one-token step: attention switched to the decode kernel, fused
        q/k/v projections swapped in. (Only Python that runs when the step is traced or captured.)"""
        saved = [c._attn_implementation for c in self._attn_configs]
        try:
            for c in self._attn_configs:
                c._attn_implementation = self.decode_attn
            for f in self._fused:
                f.swap_in()
            yield
        finally:
            for f in self._fused:
                f.swap_out()
            for c, a in zip(self._attn_configs, saved):
                c._attn_implementation = a

    def _decode_layers(self, span: int) -> None:
        """One token from the state on the device; compiled and graph-captured on CUDA."""
        lm = self.lm
        h = lm.embed_tokens(self._tok)
        text_pos = self._pos.view(1, 1)
        position_embeddings = lm.rotary_emb(h, (self._pos + self._delta).view(1, 1, 1).expand(3, 1, 1))
        visible = torch.arange(span, device=h.device) <= self._pos
        if self.decode_attn != "eager":
            mask = visible.view(1, 1, 1, span)
        else:
            mask = torch.where(visible, 0.0, torch.finfo(h.dtype).min).to(h.dtype).view(1, 1, 1, span)
        kv = _StaticKV(self._keys, self._values, self._pos, span)
        for layer in lm.layers:
            h = layer(h, attention_mask=mask, position_ids=text_pos, past_key_values=kv, use_cache=True, position_embeddings=position_embeddings)
            if isinstance(h, tuple):
                h = h[0]
        h = lm.norm(h)
        self._next_token(h[:, -1, :])
        self._pos.add_(1)

    def _decode_eager(self) -> None:
        with self._decode_attention():
            self._decode_layers(self._capacity)

    def _decode_runner(self) -> Callable[[], Any]:
        if not self.graphs or "decode" in self.failures:
            return self._decode_eager
        if self._decode_graph is None:
            span = self._capacity
            state = [self._tok, self._pos, self._seen, self._out]
            snapshot = [t.clone() for t in state]

            def once():
                with self._decode_attention():
                    self._decode_fn(span)

            def restore():
                for t, s in zip(state, snapshot):
                    t.copy_(s)

            def warm():  # a real step (its K/V slot is rewritten identically later), state put back
                once()
                restore()

            try:
                if self._decode_fn is not self._decode_layers:
                    try:
                        warm()  # compiles (once per capacity)
                    except Exception as exc:  # noqa: BLE001
                        restore()
                        self._note_failure("compile_decode", exc)
                        self._decode_fn = self._decode_layers
                graph = _capture(once, self.device, self.fake_graphs, self._pool, warm=warm)
                restore()
            except Exception as exc:  # noqa: BLE001
                restore()
                self._note_failure("decode", exc)
                return self._decode_eager
            self._decode_graph = graph
            self.stats["decode_graphs_captured"] += 1
        return self._decode_graph.replay

    def _read_tokens(self) -> tuple[list[int], float]:
        """The prefill's token, then decode steps until EOS or ``max_new_tokens``; also when the first
        token was read (``perf_counter``). With graphs the next step is queued before the previous token
        is read (no host round trip between steps on CUDA); after an EOS one queued step is scratch
        work, finished before the next call's GPU work."""
        if not self.graphs or "decode" in self.failures:
            new_ids = [int(self._out.item())]
            first_at = time.perf_counter()
            if new_ids[0] not in self.eos_ids:
                self._decode_loop(new_ids)
            return new_ids, first_at
        n = self.max_new_tokens
        if self._host_tokens is None or self._host_tokens.numel() < n:
            cuda = self.device.type == "cuda" and not self.fake_graphs
            self._host_tokens = torch.zeros(n, dtype=torch.long, pin_memory=cuda)
            self._token_events = [torch.cuda.Event() if cuda else _DoneEvent() for _ in range(n)]
        host, events = self._host_tokens, self._token_events

        def fetch(i: int) -> None:
            host[i : i + 1].copy_(self._out, non_blocking=True)
            events[i].record()

        fetch(0)
        run = self._decode_runner() if n > 1 else None
        if run is not None:  # step 1 queued before token 0 is read
            run()
            fetch(1)
        new_ids: list[int] = []
        for i in range(n):
            events[i].synchronize()
            tok = int(host[i])
            new_ids.append(tok)
            if i == 0:
                first_at = time.perf_counter()
            if tok in self.eos_ids or i + 1 >= n:
                break
            if i + 2 < n:
                run()
                fetch(i + 2)
        return new_ids, first_at

    def _decode_loop(self, new_ids: list[int]) -> None:
        run = self._decode_runner()
        while len(new_ids) < self.max_new_tokens:
            run()
            tok = int(self._out.item())
            new_ids.append(tok)
            if tok in self.eos_ids:
                break


def make_fast_generator(backbone, max_new_tokens: int, required: bool) -> FastGenerator | None:
    """A :class:`FastGenerator` for ``backbone``, or None (one logged reason) when it can't apply.

    ``required`` (engine ``fast_path: on``) turns the reason into a RuntimeError instead.
    """
    try:
        return FastGenerator(backbone, max_new_tokens)
    except FastPathUnavailable as exc:
        if required:
            raise RuntimeError(f"fast_path 'on' but the fast path can't serve this model: {exc}") from exc
        log.info("fast generation path not used: %s", exc)
        return None
