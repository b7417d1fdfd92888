"""Vision encoding: the model's own tower on the frames not encoded yet, replayed from one CUDA graph per
frame shape (else its blocks from a graph each; optionally compiled first), its attention grouped by
segment length while a fast generator encodes."""

from __future__ import annotations

import copy
import sys
import threading

import torch

from .. import vision_attention
from .frames import _FrameEntry
from .graphs import _capture, _PoolHolder


class _BlockGraphs:
    """Replaces a vision block's ``forward`` on the instance. While a fast generator encodes frames
    (a context is set for this thread), the block is replayed from a CUDA graph per input shape, with
    ``cu_seqlens`` as a host tensor (the block only splits by it), and (``ctx.grouped``) its attention
    runs ``core.vision_attention.grouped_sdpa`` through a copy of the block whose attention has its own
    config (so the plain path, which may run in another thread, keeps the model's); otherwise it passes
    straight through."""

    local = threading.local()

    def __init__(self, block: torch.nn.Module) -> None:
        self.block = block
        self.original = block.forward
        self._grouped = None
        self._compiled: dict[bool, object] = {}

    def _grouped_forward(self):
        if self._grouped is None:
            block = self.block
            clone = copy.copy(block)
            clone.__dict__.pop("forward", None)  # the class's forward, not this wrapper
            clone.__dict__.pop("_s2_block_graphs", None)
            clone._modules = dict(block._modules)
            attn = copy.copy(block._modules["attn"])
            attn.config = copy.copy(attn.config)
            attn.config._attn_implementation = vision_attention.register()
            clone._modules["attn"] = attn
            self._grouped = clone.forward
        return self._grouped

    def _forward(self, ctx):
        base = self._grouped_forward() if ctx.grouped else self.original
        if not ctx.compile:
            return base
        if ctx.grouped not in self._compiled:  # one compile serves every block (same code, weights as inputs)
            self._compiled[ctx.grouped] = torch.compile(base, dynamic=False)
        return self._compiled[ctx.grouped]

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
        if ctx is None:
            return self.original(hidden_states, *args, **kwargs)
        if ctx.graphs is None or args or cu is None or not isinstance(pe, tuple):
            return self._forward(ctx)(hidden_states, *args, **kwargs)
        cu_host = ctx.host_copy(cu)
        rest = {k: v for k, v in kwargs.items() if k not in ("cu_seqlens", "position_embeddings")}
        if any(isinstance(v, torch.Tensor) for v in rest.values()):
            return self._forward(ctx)(hidden_states, *args, **kwargs)
        key = (id(self), ctx.compile, ctx.grouped, tuple(hidden_states.shape), hidden_states.dtype, tuple(cu_host.tolist()), tuple(p.shape for p in pe), tuple(sorted(rest.items())))
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

    def __init__(self, device: torch.device, fake: bool, stats, graphs: dict | None, pool: _PoolHolder, compile: bool = False,
                 grouped: bool = False) -> None:  # fmt: skip
        """``graphs`` None: no CUDA graphs (the blocks run directly, grouped or not)."""
        self.device, self.fake, self.stats, self.graphs, self.pool = device, fake, stats, graphs, pool
        self.compile, self.grouped = compile, grouped
        self._host: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def host_copy(self, t: torch.Tensor) -> torch.Tensor:
        hit = self._host.get(id(t))
        if hit is None or hit[0] is not t:
            hit = self._host[id(t)] = (t, t.detach().to("cpu"))
        return hit[1]


# The tower's grid-only helpers (``transformers.vision_utils``, called from the modeling module) and the
# keyword arguments under which the tower's forward takes their results precomputed (each helper pops its
# own). With them recorded for one grid, the forward is pure device work: a CUDA graph can hold all of it.
GRID_HELPERS = {
    "get_vision_position_ids": ("position_ids",),
    "get_vision_cu_seqlens": ("cu_seqlens",),
    "get_vision_attention_seqlens": ("cu_seqlens", "max_seqlen"),
    "get_vision_window_index": ("window_index", "cu_window_seqlens"),
    "get_vision_interpolation_indices_and_weights": ("interp_indices", "interp_weights"),
    "get_vision_bilinear_indices_and_weights": ("bilinear_indices", "bilinear_weights"),
}
# Segment bounds that sdpa/eager vision attention only splits by (``.tolist()``): kept on the host, so
# that nothing in the captured forward waits for the device.
HOST_KEYS = ("cu_seqlens", "cu_window_seqlens")
_record_lock = threading.Lock()


def record_grid_constants(visual: torch.nn.Module, run):
    """``run()`` (a call of ``visual``) with the grid helpers of ``visual``'s modeling module recorded:
    returns ``run()``'s result and the keyword arguments that give the tower those results precomputed.
    Other threads calling the tower meanwhile (the plain path) go through the helpers unchanged."""
    module = sys.modules[type(visual).__module__]
    names = [n for n in GRID_HELPERS if callable(module.__dict__.get(n))]
    owner, recorded = threading.get_ident(), {}

    def recording(name, helper):
        def call(*args, **kwargs):
            result = helper(*args, **kwargs)
            if threading.get_ident() == owner:
                values = result if isinstance(result, tuple) else (result,)
                recorded.update({k: v for k, v in zip(GRID_HELPERS[name], values) if v is not None})
            return result

        return call

    with _record_lock:
        originals = {n: module.__dict__[n] for n in names}
        try:
            for name in names:
                setattr(module, name, recording(name, originals[name]))
            out = run()
        finally:
            for name, helper in originals.items():
                setattr(module, name, helper)
    for key in HOST_KEYS:
        if isinstance(recorded.get(key), torch.Tensor):
            recorded[key] = recorded[key].to("cpu")
    return out, recorded


def _same_outputs(a, b) -> bool:
    (ma, da), (mb, db) = a, b
    return torch.equal(ma, mb) and len(da) == len(db) and all(torch.equal(x, y) for x, y in zip(da, db))


class VisionMixin:
    """``FastGenerator``'s tower calls (state: ``visual``, ``vision_graphs``, ``_vision_graphs``, ``_pool``)."""

    def _encode(self, entries: list[_FrameEntry]) -> None:
        """Run the model's vision tower on the frames not encoded yet: all of them in one call, or with
        block graphs one frame per call (the steady step's shape, whose graphs exist: several new frames
        at once come only after a switch to the fast path or an eviction, and would capture new ones)."""
        misses = [e for e in entries if e.feats is None]
        if not misses:
            return
        if self.vision_graphs and len(misses) > 1:
            for e in misses:
                self._encode([e])
            return
        pixels = torch.cat([e.pixels for e in misses], dim=0)
        self.encoding = True
        try:
            merged, deep = self._run_tower(pixels, [e.grid for e in misses])
        finally:
            self.encoding = False
        self.stats["vision_calls"] += 1
        self.stats["frames_encoded"] += len(misses)
        sizes = [e.n_tokens for e in misses]
        merged_parts = torch.split(merged, sizes)
        deep_parts = [torch.split(d, sizes) for d in deep]
        for i, e in enumerate(misses):
            # Views into the tower's outputs: fresh tensors (the mergers run eagerly, or the tower graph's
            # outputs were copied), not a graph's static buffer, so they need no copy.
            e.feats = (merged_parts[i], [d[i] for d in deep_parts])

    def _run_tower(self, pixels: torch.Tensor, grids: list[tuple[int, int, int]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.vision_tower_graph and len(grids) == 1 and not {"vision_tower", "vision"} & set(self.failures):
            try:
                return self._tower_replay(pixels, grids[0])
            except Exception as exc:  # noqa: BLE001 - the tower with its blocks' graphs from now on
                self._note_failure("vision_tower", exc)
        grid = torch.tensor(grids, dtype=torch.long, device=self.device)
        return self._tower_outputs(self._run_tower_blocks(pixels, grid))

    def _tower_context(self, graphs: dict | None, compile: bool) -> _VisionGraphContext:
        return _VisionGraphContext(self.device, self.fake_graphs, self.stats, graphs, self._pool, compile, self.vision_grouped)

    def _tower_replay(self, pixels: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One frame through the whole tower replayed from its CUDA graph (captured per frame shape,
        after its output with the recorded grid constants equalled the tower's own); the outputs are
        copied out of the graph's buffers (the frame cache keeps them across steps)."""
        key = ("tower", grid, tuple(pixels.shape), pixels.dtype)
        entry = self._vision_graphs.get(key)
        if entry is None:
            entry = self._vision_graphs[key] = self._capture_tower(pixels, torch.tensor([grid], dtype=torch.long, device=self.device))
            self.stats["vision_tower_graphs_captured"] += 1
        graph, pixel_buf, _ = entry
        pixel_buf.copy_(pixels)
        merged, deep = graph.replay()
        return merged.clone(), [d.clone() for d in deep]

    def _capture_tower(self, pixels: torch.Tensor, grid: torch.Tensor):
        # The blocks run directly inside the capture (grouped and compiled as configured), not from their own graphs.
        _BlockGraphs.local.ctx = self._tower_context(None, self.compile_vision)
        try:
            reference, constants = record_grid_constants(self.visual, lambda: self._tower_outputs(self.visual(pixels, grid_thw=grid)))
            pixel_buf = pixels.clone()

            def tower():
                return self._tower_outputs(self.visual(pixel_buf, grid_thw=grid, **constants))

            if not _same_outputs(tower(), reference):
                raise RuntimeError(f"the tower with its recorded grid constants ({', '.join(sorted(constants))}) differs from its own output")
            graph = _capture(tower, self.device, self.fake_graphs, self._pool)
            if not _same_outputs(graph.replay(), reference):
                raise RuntimeError("the tower's graph replay differs from its own output")
        finally:
            _BlockGraphs.local.ctx = None
        return graph, pixel_buf, (grid, constants)  # device memory the graph reads: kept alive with it

    def _run_tower_blocks(self, pixels: torch.Tensor, grid: torch.Tensor):
        out = None
        graphs = self.vision_graphs and "vision" not in self.failures
        if graphs or (self.vision_grouped and "vision_grouped" not in self.failures):
            _BlockGraphs.local.ctx = self._tower_context(self._vision_graphs if graphs else None, self.compile_vision and graphs)
            try:
                out = self.visual(pixels, grid_thw=grid)
            except Exception as exc:  # noqa: BLE001 - any capture trouble: encode eagerly from now on
                self._note_failure("vision" if graphs else "vision_grouped", exc)
            finally:
                _BlockGraphs.local.ctx = None
        if out is None:
            out = self.visual(pixels, grid_thw=grid)
        return out

    @staticmethod
    def _tower_outputs(out) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if isinstance(out, torch.Tensor):  # older releases: the merged tokens alone
            return out, []
        if isinstance(out, tuple) and not hasattr(out, "pooler_output"):  # older Qwen3-VL: (merged, deepstack)
            return out[0], list(out[1] if len(out) > 1 and out[1] is not None else [])
        return out.pooler_output, list(getattr(out, "deepstack_features", None) or [])
