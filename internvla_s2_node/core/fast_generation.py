"""Fast S2 generation: the same greedy answer as ``PlainGenerator``, without its repeated work.

What the plain way (processor + ``model.generate``) does again at every step, and what we do instead:

* **Image preprocessing.** Each frame is preprocessed once (``image_processor`` on that frame alone gives
  the rows the processor would give for it in a batch) and kept under its key (episode frame index).
  The prompt's token ids are built by tokenizing the chat text with one ``<|image_pad|>`` per image and
  expanding each to the frame's token count, exactly as the processor does.
* **Vision encoding.** The vision tower attends within each image (``cu_seqlens``, windows inside an
  image for Qwen2.5-VL), so a frame's features do not depend on the other frames. The tower's
  ``forward`` is wrapped with a per-key cache (merged tokens and, for Qwen3-VL, the deepstack
  features); transformers' own prefill (mrope positions, placeholder scatter, deepstack injection) runs
  unchanged on the cached features. Only new frames are encoded: one per step in an episode.
* **Decoding.** The prefill is the model's own forward (with the position ids ``generate`` would pass),
  its keys/values written into a preallocated static cache. Each next token is one fixed-shape step
  (embedding, decoder layers over the static cache with a mask, norm, lm_head, greedy argmax, and
  repetition penalty when the generation config asks for it) whose whole state lives on the device;
  on CUDA that step is captured once per cache-length bucket in a CUDA graph and replayed, so a token
  costs one graph launch and one 4-byte read instead of hundreds of Python-dispatched kernels.

Nothing is batched that could change the answer; the remaining differences to the plain path are
floating-point rounding (a frame encoded alone vs. in a batch, a masked static cache vs. an exact-length
one). On CPU in float32 the tokens agree exactly in the tests; in bf16 on a GPU rare near-ties can flip
(the benchmark reports the agreement rate).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import logging
import threading
import time
from typing import Any, Hashable, Sequence

import torch

from .generation import Generated

log = logging.getLogger(__name__)

# Prefill runs the model's own attention; the one-token decode step runs sdpa (eager for eager models)
# over the static cache, whose unwritten tail only a mask can hide (flash kernels take no such mask).
SUPPORTED_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")
DEFAULT_CACHE_FRAMES = 256
_BUCKET = 256  # decode graphs are captured per attention span rounded up to this many tokens


class FastPathUnavailable(RuntimeError):
    """The fast path cannot serve this backbone; the message says why."""


@dataclasses.dataclass
class _FrameEntry:
    grid: tuple[int, int, int]
    n_tokens: int
    size: tuple[int, int]
    pixels: torch.Tensor | None = None  # on the device, model dtype; dropped once encoded
    feats: tuple[torch.Tensor, list[torch.Tensor]] | None = None  # merged tokens, deepstack features


class _VisionCache:
    """Replaces ``visual.forward`` on the instance; serves cached per-frame features while a
    generator has set the frames of the current call (``active``), else passes through."""

    def __init__(self, visual: torch.nn.Module) -> None:
        self.visual = visual
        self.original = visual.forward
        self.local = threading.local()
        self.out_kind: str | None = None  # what the tower returns: "output" (a ModelOutput), "tuple" or "tensor"
        self.out_type: Any = None

    @classmethod
    def install(cls, visual: torch.nn.Module) -> "_VisionCache":
        existing = getattr(visual, "_s2_vision_cache", None)
        if existing is not None:
            return existing
        cache = cls(visual)
        visual.forward = cache  # instance attribute: nn.Module.__call__ dispatches to it
        visual._s2_vision_cache = cache
        return cache

    def __call__(self, hidden_states, grid_thw=None, *args, **kwargs):
        gen = getattr(self.local, "active", None)
        if gen is None:
            return self.original(hidden_states, grid_thw, *args, **kwargs)
        return gen._encode_frames(self, grid_thw, kwargs)


class _StaticKV:
    """Minimal cache for the decode step: writes one token's K/V at ``pos`` and returns the span."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], pos: torch.Tensor, span: int) -> None:
        self.keys, self.values, self.pos, self.span = keys, values, pos, span

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        k, v = self.keys[layer_idx], self.values[layer_idx]
        k.index_copy_(2, self.pos, key_states.to(k.dtype))
        v.index_copy_(2, self.pos, value_states.to(v.dtype))
        return k[:, :, : self.span], v[:, :, : self.span]


def _prefill_cache_class():
    from transformers import DynamicCache

    class _PrefillCache(DynamicCache):
        """A DynamicCache that also hands each layer's prompt K/V to the static cache."""

        def __init__(self, sink) -> None:
            super().__init__()
            self._sink = sink

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            self._sink(layer_idx, key_states, value_states)
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)

    return _PrefillCache


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


def _greedy_settings(model) -> tuple[set[int], float]:
    """EOS ids and repetition penalty of greedy ``generate`` with this model's generation config."""
    gc = getattr(model, "generation_config", None)
    if gc is None:
        return set(), 1.0
    for name, neutral in _UNSUPPORTED_GENERATION.items():
        value = getattr(gc, name, neutral)
        if value not in (neutral, None, 0, [], ()) and not (name.endswith("penalty") and value == 1.0):
            raise FastPathUnavailable(f"generation config sets {name}={value!r}, which the fast path does not apply")
    if (getattr(gc, "min_length", 0) or 0) > 1:
        raise FastPathUnavailable(f"generation config sets min_length={gc.min_length}")
    eos = gc.eos_token_id
    eos_ids = set() if eos is None else ({int(eos)} if isinstance(eos, int) else {int(e) for e in eos})
    penalty = float(getattr(gc, "repetition_penalty", 1.0) or 1.0)
    return eos_ids, penalty


def _attn_implementation(model) -> str:
    cfg = model.config
    text_cfg = getattr(cfg, "text_config", cfg)
    return getattr(text_cfg, "_attn_implementation", None) or getattr(cfg, "_attn_implementation", None) or "eager"


class FastGenerator:
    """Greedy generation with per-frame caches, a static KV cache and (on CUDA) graph-replayed decoding."""

    def __init__(
        self,
        backbone,
        max_new_tokens: int,
        cache_frames: int = DEFAULT_CACHE_FRAMES,
        cuda_graphs: bool | None = None,
        decode_attention: str | None = None,
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
        if visual is None or lm is None or not hasattr(lm, "layers"):
            raise FastPathUnavailable(f"{type(model).__name__} has no model.visual / model.language_model.layers")
        self.base, self.visual, self.lm = base, visual, lm
        attn = _attn_implementation(model)
        if attn not in SUPPORTED_ATTENTION:
            raise FastPathUnavailable(f"attention implementation {attn!r} (fast path supports {SUPPORTED_ATTENTION})")
        self.attn = attn
        self.decode_attn = decode_attention or ("eager" if attn == "eager" else "sdpa")
        if self.decode_attn not in ("sdpa", "eager"):
            raise ValueError(f"decode_attention must be 'sdpa' or 'eager', got {decode_attention!r}")
        self._attn_configs = list({id(c): c for c in (getattr(l.self_attn, "config", None) for l in lm.layers) if c is not None}.values())
        text_cfg = getattr(model.config, "text_config", model.config)
        layer_types = getattr(text_cfg, "layer_types", None) or []
        if any(t != "full_attention" for t in layer_types) or getattr(text_cfg, "use_sliding_window", False):
            raise FastPathUnavailable("sliding-window attention layers")
        self.eos_ids, self.repetition_penalty = _greedy_settings(model)
        self.image_token_id = int(model.config.image_token_id)
        vcfg = model.config.vision_config
        self.merge = int(getattr(vcfg, "spatial_merge_size", 2))
        self.n_layers = len(lm.layers)
        self.n_kv = int(text_cfg.num_key_value_heads)
        self.head_dim = int(getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // text_cfg.num_attention_heads)
        self.vocab = int(model.get_output_embeddings().weight.shape[0])
        self.is_moe = bool(getattr(text_cfg, "num_experts", 0) or getattr(text_cfg, "num_local_experts", 0))
        fwd = set(inspect.signature(model.forward).parameters)
        self._pass_mm_types = "mm_token_type_ids" in fwd
        self._rope_params = set(inspect.signature(base.get_rope_index).parameters)
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda" and not self.is_moe
            if self.device.type == "cuda" and self.is_moe:
                log.info("fast path: MoE routing is data-dependent, so decoding runs without CUDA graphs")
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self._PrefillCache = _prefill_cache_class()
        self._vision = _VisionCache.install(visual)

        self._lock = threading.Lock()  # guards the frame cache (reset() may come from another thread)
        self._generate_lock = threading.Lock()  # one generation at a time: the decode state is shared
        self._epoch = 0
        self._frames: collections.OrderedDict[Hashable, _FrameEntry] = collections.OrderedDict()
        self._call_entries: list[_FrameEntry] | None = None
        self.stats = collections.Counter()

        # Decode state, allocated once so that captured graphs keep pointing at it.
        dev = self.device
        self._tok = torch.zeros(1, 1, dtype=torch.long, device=dev)
        self._pos = torch.zeros(1, dtype=torch.long, device=dev)  # where this step's K/V goes (= text position)
        self._delta = torch.zeros(1, dtype=torch.long, device=dev)  # mrope position minus text position
        self._seen = torch.zeros(self.vocab, dtype=torch.bool, device=dev)  # ids so far, for repetition penalty
        self._out = torch.zeros(1, dtype=torch.long, device=dev)
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._capacity = 0
        self._graphs: dict[int, Any] = {}
        self._graph_failed: str | None = None

    # ------------------------------------------------------------------ public interface
    def reset(self) -> None:
        with self._lock:
            self._epoch += 1
            self._frames = collections.OrderedDict()

    def generate(self, messages: list[dict[str, Any]], images: Sequence[Any], keys: Sequence[Hashable | None]) -> Generated:
        if len(keys) != len(images):
            raise ValueError(f"{len(images)} images but {len(keys)} keys")
        with self._generate_lock, torch.inference_mode():
            return self._generate(messages, images, keys)

    def _generate(self, messages, images, keys) -> Generated:
        t0 = time.perf_counter()
        with self._lock:
            epoch = self._epoch
            frames = self._frames
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        entries = [self._entry(frames, key, image) for key, image in zip(keys, images)]
        ids = self._token_ids(text, entries)
        t1 = time.perf_counter()
        first, t_vision = self._prefill(ids, entries)
        t2 = time.perf_counter()
        new_ids = [first]
        if first not in self.eos_ids:
            self._decode(new_ids, len(ids))
        t3 = time.perf_counter()
        with self._lock:
            if self._epoch == epoch:
                self._store(frames, keys, entries)
        decoded = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        self.stats["calls"] += 1
        self.stats["new_tokens"] += len(new_ids)
        timing = {
            "preprocess": t1 - t0,
            "vision": t_vision,
            "prefill": t2 - t1 - t_vision,
            "first_token": t2 - t0,
            "decode": t3 - t2,
            "generate": t3 - t1,
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
        out = self.image_processor(images=[image], return_tensors="pt")
        grid = tuple(int(x) for x in out["image_grid_thw"][0].tolist())
        n_tokens = grid[0] * grid[1] * grid[2] // (self.merge**2)
        pixels = out["pixel_values"].to(device=self.device, dtype=self.dtype)
        self.stats["frames_preprocessed"] += 1
        return _FrameEntry(grid=grid, n_tokens=n_tokens, size=size, pixels=pixels)

    def _store(self, frames, keys, entries) -> None:
        for key, entry in zip(keys, entries):
            if key is None:
                continue
            if entry.feats is not None:
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
                try:
                    entry = next(it)
                except StopIteration:
                    raise ValueError("the chat text has more image placeholders than images") from None
                ids.extend([tok] * entry.n_tokens)
            else:
                ids.append(tok)
        if next(it, None) is not None:
            raise ValueError("more images than image placeholders in the chat text")
        return ids

    def _encode_frames(self, hook: _VisionCache, grid_thw, kwargs) -> Any:
        """Called in place of ``visual.forward`` during our prefill: the features of this call's frames."""
        entries = self._call_entries
        misses = [e for e in entries if e.feats is None]
        if misses:
            pixels = torch.cat([e.pixels for e in misses], dim=0)
            grid = torch.tensor([e.grid for e in misses], dtype=torch.long, device=self.device)
            out = hook.original(pixels, grid, **kwargs)
            self.stats["vision_calls"] += 1
            self.stats["frames_encoded"] += len(misses)
            if isinstance(out, torch.Tensor):  # older releases: the merged tokens alone
                hook.out_kind, merged, deep = "tensor", out, []
            elif isinstance(out, tuple) and not hasattr(out, "pooler_output"):  # older Qwen3-VL: (merged, deepstack)
                hook.out_kind, merged, deep = "tuple", out[0], list(out[1] if len(out) > 1 and out[1] is not None else [])
            else:
                hook.out_kind, hook.out_type = "output", type(out)
                merged = out.pooler_output
                deep = list(getattr(out, "deepstack_features", None) or [])
            sizes = [e.n_tokens for e in misses]
            merged_parts = torch.split(merged, sizes)
            deep_parts = [torch.split(d, sizes) for d in deep]
            for i, e in enumerate(misses):
                e.feats = (merged_parts[i], [d[i] for d in deep_parts])
        merged = torch.cat([e.feats[0] for e in entries], dim=0)
        n_deep = len(entries[0].feats[1])
        deep = [torch.cat([e.feats[1][j] for e in entries], dim=0) for j in range(n_deep)]
        if hook.out_kind == "tensor":
            return merged
        if hook.out_kind == "tuple":
            return (merged, deep)
        fields = {"last_hidden_state": None, "pooler_output": merged}
        if n_deep or "deepstack_features" in getattr(hook.out_type, "__dataclass_fields__", {}):
            fields["deepstack_features"] = deep
        return hook.out_type(**fields)

    # ------------------------------------------------------------------ prefill
    def _ensure_capacity(self, need: int) -> None:
        if need <= self._capacity:
            return
        floor = 2048 if self.device.type == "cuda" else _BUCKET
        cap = max(floor, -(-need // 1024) * 1024)
        self._keys = [torch.zeros(1, self.n_kv, cap, self.head_dim, dtype=self.dtype, device=self.device) for _ in range(self.n_layers)]
        self._values = [torch.zeros_like(k) for k in self._keys]
        self._capacity = cap
        self._graphs.clear()

    def _sink(self, layer_idx: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        n = key_states.shape[2]
        self._keys[layer_idx][:, :, :n].copy_(key_states)
        self._values[layer_idx][:, :, :n].copy_(value_states)

    def _position_ids(self, input_ids: torch.Tensor, mm_types: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``[4, 1, L]`` position ids as ``generate`` passes them (text row, then the three mrope rows)."""
        kwargs = {"image_grid_thw": grid, "attention_mask": torch.ones_like(input_ids)}
        if "mm_token_type_ids" in self._rope_params:
            kwargs["mm_token_type_ids"] = mm_types
        vision_pos, deltas = self.base.get_rope_index(input_ids, **kwargs)
        text_pos = torch.arange(input_ids.shape[1], dtype=vision_pos.dtype).view(1, 1, -1)
        return torch.cat([text_pos, vision_pos], dim=0), int(deltas.reshape(-1)[0])

    def _prefill(self, ids: list[int], entries: list[_FrameEntry]) -> tuple[int, float]:
        L = len(ids)
        self._ensure_capacity(L + self.max_new_tokens)
        input_ids = torch.tensor([ids], dtype=torch.long)
        mm_types = (input_ids == self.image_token_id).to(torch.int32)
        grid = torch.tensor([e.grid for e in entries], dtype=torch.long) if entries else None
        position_ids, delta = self._position_ids(input_ids, mm_types, grid)
        dev = self.device
        t_vision = 0.0
        if any(e.feats is None for e in entries):
            # Encode the new frames first (timed on their own); the prefill below then only reads the cache.
            tv = time.perf_counter()
            self._call_entries = entries
            self._vision.local.active = self
            try:
                self._encode_frames(self._vision, None, {})
            finally:
                self._vision.local.active = None
                self._call_entries = None
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t_vision = time.perf_counter() - tv
        kwargs = dict(
            input_ids=input_ids.to(dev),
            attention_mask=torch.ones_like(input_ids, device=dev),
            position_ids=position_ids.to(dev),
            past_key_values=self._PrefillCache(self._sink),
            use_cache=True,
            logits_to_keep=1,
        )
        if entries:
            kwargs["pixel_values"] = torch.zeros(0, 1, dtype=self.dtype, device=dev)  # unused: the cache serves features
            kwargs["image_grid_thw"] = grid.to(dev)
            if self._pass_mm_types:
                kwargs["mm_token_type_ids"] = mm_types.to(dev)
        self._call_entries = entries
        self._vision.local.active = self
        try:
            out = self.model(**kwargs)
        finally:
            self._vision.local.active = None
            self._call_entries = None
        logits = out.logits[:, -1, :].float()
        if self.repetition_penalty != 1.0:
            self._seen.zero_()
            self._seen[input_ids[0].to(dev)] = True
            logits = self._penalize(logits)
        first = torch.argmax(logits, dim=-1)
        self._tok.copy_(first.view(1, 1))
        self._pos.fill_(L)
        self._delta.fill_(delta)
        if self.repetition_penalty != 1.0:
            self._seen[first] = True
        return int(first.item()), t_vision

    def _penalize(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.repetition_penalty
        penalized = torch.where(logits < 0, logits * p, logits / p)
        return torch.where(self._seen.view(1, -1), penalized, logits)

    # ------------------------------------------------------------------ decode
    @contextlib.contextmanager
    def _decode_attention(self):
        """The layers' attention switched to the decode kernel (sdpa/eager) for the one-token step."""
        if self.decode_attn == self.attn:
            yield
            return
        saved = [c._attn_implementation for c in self._attn_configs]
        try:
            for c in self._attn_configs:
                c._attn_implementation = self.decode_attn
            yield
        finally:
            for c, a in zip(self._attn_configs, saved):
                c._attn_implementation = a

    def _decode_step(self, span: int) -> None:
        """One token from the state on the device; captured in a CUDA graph on CUDA."""
        with self._decode_attention():
            self._decode_layers(span)

    def _decode_layers(self, span: int) -> None:
        lm = self.lm
        h = lm.embed_tokens(self._tok)
        text_pos = self._pos.view(1, 1)
        mrope_pos = (self._pos + self._delta).view(1, 1, 1).expand(3, 1, 1)
        position_embeddings = lm.rotary_emb(h, mrope_pos)
        visible = torch.arange(span, device=self.device) <= self._pos
        if self.decode_attn == "sdpa":
            mask = visible.view(1, 1, 1, span)
        else:
            zero = torch.zeros((), dtype=h.dtype, device=self.device)
            mask = torch.where(visible, zero, torch.finfo(h.dtype).min).view(1, 1, 1, span)
        kv = _StaticKV(self._keys, self._values, self._pos, span)
        for layer in lm.layers:
            h = layer(
                h,
                attention_mask=mask,
                position_ids=text_pos,
                past_key_values=kv,
                use_cache=True,
                position_embeddings=position_embeddings,
            )
            if isinstance(h, tuple):
                h = h[0]
        h = lm.norm(h)
        logits = self.model.lm_head(h[:, -1, :]).float()
        if self.repetition_penalty != 1.0:
            logits = self._penalize(logits)
        nxt = torch.argmax(logits, dim=-1)
        self._out.copy_(nxt)
        self._tok.copy_(nxt.view(1, 1))
        if self.repetition_penalty != 1.0:
            self._seen.index_fill_(0, nxt, True)
        self._pos.add_(1)

    def _state(self) -> list[torch.Tensor]:
        return [self._tok, self._pos, self._seen, self._out]

    def _graph(self, span: int):
        graph = self._graphs.get(span)
        if graph is not None or self._graph_failed:
            return graph
        snapshot = [t.clone() for t in self._state()]

        def restore() -> None:
            for t, s in zip(self._state(), snapshot):
                t.copy_(s)

        try:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up: library handles, workspaces (same slot rewritten below)
                    self._decode_step(span)
                    restore()
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._decode_step(span)
            restore()
        except Exception as exc:  # noqa: BLE001 - any capture failure means eager decoding
            torch.cuda.synchronize(self.device)
            restore()
            self._graph_failed = f"{type(exc).__name__}: {exc}"
            log.warning("decode step could not be captured in a CUDA graph, decoding eagerly: %s", self._graph_failed)
            return None
        self._graphs[span] = graph
        self.stats["graphs_captured"] += 1
        return graph

    def _decode(self, new_ids: list[int], prompt_len: int) -> None:
        span = min(self._capacity, -(-(prompt_len + self.max_new_tokens) // _BUCKET) * _BUCKET)
        graph = self._graph(span) if self.cuda_graphs else None
        while len(new_ids) < self.max_new_tokens:
            if graph is not None:
                graph.replay()
            else:
                self._decode_step(span)
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
