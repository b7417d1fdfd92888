"""``FastGenerator``: the pieces put together behind ``generate`` / ``reset``; ``make_fast_generator``."""

from __future__ import annotations

import collections
import functools
import gc
import inspect
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from ..generation import Generated
from . import decode_attention as decode_kernels
from . import gemv
from .decode import DECODE_ATTENTION, DECODE_ATTENTION_TRITON, DecodeMixin, _layer_copies, _register_decode_attention
from .frames import FramesMixin, _FrameEntry
from .fused import _FusedProjections, _fuse_layers
from .graphs import _PoolHolder
from .kv import StaticBuffersMixin, _layer_call
from .prefill import PrefillMixin
from .prompt_inputs import PromptInputsMixin
from .settings import DEFAULT_CACHE_FRAMES, SUPPORTED_ATTENTION, FastPathUnavailable, _attn_implementation, _greedy_settings
from .tokens import TokensMixin
from .vision import VisionMixin, _BlockGraphs

log = logging.getLogger(__name__)


class FastGenerator(FramesMixin, VisionMixin, PromptInputsMixin, StaticBuffersMixin, PrefillMixin, DecodeMixin, TokensMixin):
    """Greedy generation with per-frame caches, a static KV cache and, on CUDA, graph-replayed
    prefill, decode and vision blocks. Same interface as ``generation.PlainGenerator``."""

    path = "fast"  # the name decisions report (``Decision.path``)

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
        compile_scope: str = "layer",
        prefix_reuse: bool = False,
        vision_grouped: bool | None = None,
        decode_compile_options: dict | None = None,
        decode_gemv: str | None = None,
        vision_tower_graph: bool | None = None,
    ) -> None:
        self.backbone = backbone
        self.max_new_tokens = int(max_new_tokens)
        self._token_limit = self.max_new_tokens  # tokens a call decodes (fewer in a warm-up)
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
        if self.decode_attn not in ("sdpa", "eager", DECODE_ATTENTION, DECODE_ATTENTION_TRITON):
            raise ValueError(f"decode_attention must be one of 'sdpa', 'eager', {DECODE_ATTENTION!r}, {DECODE_ATTENTION_TRITON!r}, got {decode_attention!r}")
        if self.decode_attn == DECODE_ATTENTION_TRITON and not decode_kernels.available(self.device):
            raise FastPathUnavailable(f"decode_attention {DECODE_ATTENTION_TRITON!r} needs CUDA and Triton")
        if self.decode_attn in (DECODE_ATTENTION, DECODE_ATTENTION_TRITON):
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
        # ``vision_tower_graph``: a one-frame call replays the whole tower from one graph per frame shape (its
        # grid constants recorded once), not the blocks one graph each between eager position and window
        # work. Off by default until it is measured on a GPU (benchmarks/step_variants.py, prefix_gemv_tower).
        self.vision_tower_graph = bool(vision_tower_graph) and self.vision_graphs
        # sdpa vision attention: one call per distinct segment length (image, or Qwen2.5-VL window), not per segment.
        blocks = getattr(visual, "blocks", None) or []
        groupable = vision_attn == "sdpa" and all(getattr(getattr(b, "attn", None), "config", None) is not None for b in blocks) and len(blocks) > 0
        self.vision_grouped = groupable if vision_grouped is None else bool(vision_grouped) and groupable
        if compile_decode is None:
            compile_decode = cuda and self.graphs and not self.fake_graphs
        self.compile_decode = bool(compile_decode)
        if compile_prefill is None:
            compile_prefill = cuda and self.graphs and not self.fake_graphs
        self.compile_prefill = bool(compile_prefill)
        self._decode_fn: Callable[[int], None] = self._decode_layers
        self._prefill_fn: Callable[..., None] = self._prefill_layers
        self.decode_compile_options = dict(decode_compile_options or {})
        if compile_scope not in ("layer", "model"):
            raise ValueError(f"compile_scope must be 'layer' or 'model', got {compile_scope!r}")
        if decode_compile_options and compile_scope != "layer":
            raise ValueError("decode_compile_options needs compile_scope='layer'")
        # The compiled functions are made by the first call (``_set_up_compile``), not here: the first
        # ``torch.compile`` imports Inductor's compiler (about 2 s of host time), which would delay the
        # engine's first decision; with a background build that first call is in the build thread.
        self._compile_pending = self.compile_decode or self.compile_prefill
        self.compile_scope = compile_scope
        # Keep the K/V of the prompt's prefix that equals the last prompt's (same tokens, same frames at
        # the same positions) and prefill only the rest; sdpa and eager take the offset causal mask.
        self.prefix_reuse = bool(prefix_reuse) and self.attn in ("sdpa", "eager")
        self._kv_prompt: tuple[list[int], list] | None = None  # the prompt whose K/V the cache holds
        self.last_prefix = (0, 0)  # (positions reused, prompt length) of the last call
        if self.vision_graphs or self.vision_grouped:
            for block in visual.blocks:
                _BlockGraphs.install(block)
        # Decode-time fused q/k/v and gate/up GEMVs (weights re-laid as views: no extra memory).
        if fuse_qkv is None:
            fuse_qkv = cuda
        # One-token projections (decode steps, the output head) by cuBLAS or the Triton GEMV (``gemv``). The
        # default is the GEMV where CUDA graphs replay the decode step: on the H200 it took the decode token
        # from 5.27 to 4.90 ms (8B), 2.05 to 1.79 (2B) and 4.78 to 4.45 (Qwen2.5-VL 7B), the step's p50 from
        # 79.1 to 75.5, 33.6 to 31.9 and 93.3 to 91.1 ms (benchmarks/results/step_variants_gemv_*). Eagerly,
        # the custom op's dispatch would cost more than it saves.
        if decode_gemv is None:
            decode_gemv = "triton" if self.graphs and not self.fake_graphs and gemv.available(self.device) else "cublas"
        if decode_gemv not in ("cublas", "triton"):
            raise ValueError(f"decode_gemv must be 'cublas' or 'triton', got {decode_gemv!r}")
        if decode_gemv == "triton" and not gemv.available(self.device):
            raise FastPathUnavailable("decode_gemv 'triton' needs CUDA and Triton")
        self.gemv = decode_gemv == "triton"
        linear = gemv.gemv if self.gemv else torch.nn.functional.linear
        self._fused: list[_FusedProjections] = _fuse_layers(lm.layers, fuse_mlp=not self.is_moe, linear=linear) if fuse_qkv else []
        self._decode_stack = _layer_copies(lm.layers, self._fused, self.decode_attn, gemv=self.gemv)
        self._prefill_stack = _layer_copies(lm.layers)
        # Image preprocessing on the GPU (torchvision backend), per frame size only where it gives the
        # CPU's exact pixel values (checked on the first frame of each size).
        self.device_preprocess = cuda if device_preprocess is None else bool(device_preprocess)
        self._device_pp_ok: dict[Any, bool] = {}

        self._lock = threading.Lock()  # guards the frame cache (reset() may come from another thread)
        self._generate_lock = threading.Lock()  # one generation at a time: the device state is shared
        self._epoch = 0
        self._frames: collections.OrderedDict[Hashable, _FrameEntry] = collections.OrderedDict()
        self._rope_memo: collections.OrderedDict[tuple, tuple[torch.Tensor, int]] = collections.OrderedDict()
        self._text_memo: collections.OrderedDict[tuple, str] = collections.OrderedDict()  # chat template output
        self._ids_memo: collections.OrderedDict[str, list[int]] = collections.OrderedDict()  # tokenizer output
        self.stats = collections.Counter()
        self.encoding = False  # True while the vision tower runs for this generator
        self.failures: dict[str, str] = {}  # graph/compile attempts that failed, and why (then eager)

        dev = self.device
        self._tok = torch.zeros(1, 1, dtype=torch.long, device=dev)  # next input token
        self._pos = torch.zeros(1, dtype=torch.long, device=dev)  # its position / KV slot
        self._delta = torch.zeros(1, dtype=torch.long, device=dev)  # mrope position minus text position
        self._last = torch.zeros(1, dtype=torch.long, device=dev)  # index of the prompt's last token
        self._start = torch.zeros(1, dtype=torch.long, device=dev)  # first prefilled position (prefix reuse)
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

    @property
    def builds(self) -> bool:
        """Whether the first calls compile or capture something (then a warm-up ahead of serving pays)."""
        return bool(self.graphs or self.compile_decode or self.compile_prefill or self.vision_graphs)

    def warm_up(self, requests, check: Callable[[], None] | None = None) -> None:
        """Run ``requests`` ((messages, images, keys) each) so that their compiles and graph captures are
        done before serving, then forget their frames. ``check`` runs between requests (it may raise to
        stop). Then the prefill graphs of other instructions' prompts too (``_cover_prefill``).
        Safe in a thread of its own while the plain path serves from the same model."""
        requests, lengths = list(requests), []
        with self._generate_lock, torch.inference_mode():
            try:
                grown = self._warm_requests(requests, check, lengths)
                if grown:  # the larger KV cache dropped the graphs captured before it: capture them again
                    self._warm_requests(requests[: grown + 1], check)
                if lengths:
                    self._cover_prefill(max(lengths), check)
            finally:
                self._token_limit = self.max_new_tokens
        self.stats["warmup_requests"] += len(requests)
        self.reset()

    def _warm_requests(self, requests, check, lengths: list[int] | None = None) -> int:
        """Run ``requests`` (their prompt lengths appended to ``lengths``); the index of the last one after
        the first that grew the KV cache, else 0."""
        grown = 0
        for i, (messages, images, keys) in enumerate(requests):
            if check is not None:
                check()
            capacity = self._capacity
            # Once the decode graph is there, a warm-up request's further tokens only cost time.
            self._token_limit = 1 if self._decode_graph is not None else self.max_new_tokens
            self._generate(messages, images, keys)
            if lengths is not None:
                lengths.append(self.last_prefix[1])
            self.stats["warmup_calls"] += 1
            if i and self._capacity != capacity:
                grown = i
        return grown

    # ------------------------------------------------------------------ one call
    def _set_up_compile(self) -> None:
        """The compiled decode and prefill functions (once, by the first call)."""
        self._compile_pending = False
        # Round where eager rounds (bf16 casts inside fused kernels), to stay close to the plain path.
        try:
            import torch._inductor.config as inductor_config

            options = {"emulate_precision_casts": True} if hasattr(inductor_config, "emulate_precision_casts") else None
        except ImportError:
            options = None
        # "layer": one decoder layer compiled once and reused by all (with inline_inbuilt_nn_modules
        # the weights are inputs), the rest of the step eager; the CUDA graph captures it all, so the
        # Python loop costs nothing at replay and the cold compile is one layer's instead of N.
        # "model": the whole step traced and compiled (slower to compile, fuses across layers).
        # Extra Inductor options for the decode step alone (e.g. max_autotune: Triton GEMV templates
        # tried against cuBLAS). Dynamo caches compiled code per code object, whatever the options,
        # so with options of its own the decode layer is compiled from a function of its own.
        decode_layer, decode_options = _decode_layer, options
        if self.decode_compile_options:
            decode_layer, decode_options = _decode_layer_tuned, {**(options or {}), **self.decode_compile_options}
        if self.compile_scope == "layer":
            if self.compile_decode:
                self._decode_fn = functools.partial(self._decode_layers, layer_fn=torch.compile(decode_layer, dynamic=False, options=decode_options))
            if self.compile_prefill:
                self._prefill_fn = functools.partial(self._prefill_layers, layer_fn=torch.compile(_prefill_layer, dynamic=True, options=options))
        else:
            if self.compile_decode:
                self._decode_fn = torch.compile(self._decode_layers, dynamic=False, options=options)
            if self.compile_prefill:  # one compile for all prompt lengths (captured per bucket)
                self._prefill_fn = torch.compile(self._prefill_layers, dynamic=True, options=options)

    def _generate(self, messages, images, keys) -> Generated:
        if self._compile_pending:
            self._set_up_compile()
        t0 = time.perf_counter()
        with self._lock:
            epoch, frames = self._epoch, self._frames
        text = self._chat_text(messages)
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
        self._kv_prompt = None
        self._prefill(prompt, entries)
        self._kv_prompt = (ids, list(entries))
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
    def _note_failure(self, what: str, exc: Exception) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.failures[what] = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("fast path: %s runs eagerly from now on (%s)", what, self.failures[what])



def _decode_layer(layer, h, mask, text_pos, kv, position_embeddings):
    """``kv._layer_call`` under its own code object for the decode compile (static shapes)."""
    return _layer_call(layer, h, mask, text_pos, kv, position_embeddings)


def _decode_layer_tuned(layer, h, mask, text_pos, kv, position_embeddings):
    """``_decode_layer`` under a code object of its own, for a decode compile with other options."""
    return _layer_call(layer, h, mask, text_pos, kv, position_embeddings)


def _prefill_layer(layer, h, mask, text_pos, kv, position_embeddings):
    """``kv._layer_call`` under its own code object for the prefill compile (dynamic length)."""
    return _layer_call(layer, h, mask, text_pos, kv, position_embeddings)


def make_fast_generator(backbone, max_new_tokens: int, required: bool, prefix_reuse: bool = False) -> FastGenerator | None:
    """A :class:`FastGenerator` for ``backbone``, or None (one logged reason) when it can't apply.

    ``required`` (engine ``fast_path: on``) turns the reason into a RuntimeError instead.
    """
    try:
        return FastGenerator(backbone, max_new_tokens, prefix_reuse=prefix_reuse)
    except FastPathUnavailable as exc:
        if required:
            raise RuntimeError(f"fast_path 'on' but the fast path can't serve this model: {exc}") from exc
        log.info("fast generation path not used: %s", exc)
        return None
