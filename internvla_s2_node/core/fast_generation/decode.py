"""Decoding: one fixed-shape step over the static cache (fused masked attention, fused projections),
compiled and captured in a CUDA graph on CUDA."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from . import decode_attention
from .gemv import GemvLinear
from .graphs import _capture
from .kv import _layer_call, _LayerKV

DECODE_ATTENTION = "s2_decode"
DECODE_ATTENTION_TRITON = "s2_decode_triton"  # decode_attention.py: two Triton kernels, opt-in


def _decode_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention of a few query tokens over the static cache (``decode_attention.reference``).

    ``attention_mask``: bool ``[1, 1, 1, S]``, True where a slot may be attended. Returns
    ``([B, q, H, d], None)`` like the transformers attention functions.
    """
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return decode_attention.reference(query, key, value, attention_mask, scale), None


_registered = False


def _register_decode_attention() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(DECODE_ATTENTION, _decode_attention_forward)
        AttentionInterface.register(DECODE_ATTENTION_TRITON, decode_attention.attention_forward)
        _registered = True


def _shallow_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy sharing parameters, buffers and children, with its own table of children."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    return clone


UNFUSED = {"self_attn": "o_proj", "mlp": "down_proj"}  # the decode step's projections that are not fused


def _layer_copies(layers, fused=(), attn: str | None = None, gemv: bool = False) -> list[torch.nn.Module]:
    """The fast path's own copies of the decoder layers: same weights, every attention's ``layer_idx``
    0 (each layer gets its own cache object, so one compiled layer serves all), and for decoding the
    attention set to ``attn`` (through a copy of its config), the fused projections in place and, with
    ``gemv``, the other projections (``UNFUSED``) computed by the Triton GEMV. The
    model's layers are never changed, so the plain path may run in another thread while the fast path
    is compiled or captured (``core.warm_start``)."""
    by_parent = {id(f.parent): f for f in fused}
    configs: dict[int, object] = {}
    stack = []
    for layer in layers:
        clone = _shallow_copy(layer)
        for name in ("self_attn", "mlp"):
            child = layer._modules.get(name)
            if child is None:
                continue
            child_copy = _shallow_copy(child)
            if id(child) in by_parent:
                by_parent[id(child)].install(child_copy)
            projection = getattr(child, UNFUSED[name], None) if gemv else None
            if isinstance(projection, torch.nn.Linear):
                child_copy._modules[UNFUSED[name]] = GemvLinear(projection)
            if name == "self_attn" and hasattr(child, "layer_idx"):
                child_copy.layer_idx = 0
            config = getattr(child, "config", None) if name == "self_attn" and attn is not None else None
            if config is not None:
                if id(config) not in configs:
                    configs[id(config)] = copy.copy(config)
                    configs[id(config)]._attn_implementation = attn
                child_copy.config = configs[id(config)]
            clone._modules[name] = child_copy
        stack.append(clone)
    return stack


class DecodeMixin:
    """``FastGenerator``'s decode step (state: ``_decode_graph``, ``_decode_fn``, ``_fused``)."""

    def _decode_layers(self, span: int, layer_fn=_layer_call) -> None:
        """One token from the state on the device; compiled (whole, or ``layer_fn`` per layer) and
        graph-captured on CUDA."""
        lm = self.lm
        h = lm.embed_tokens(self._tok)
        text_pos = self._pos.view(1, 1)
        position_embeddings = lm.rotary_emb(h, (self._pos + self._delta).view(1, 1, 1).expand(3, 1, 1))
        visible = torch.arange(span, device=h.device) <= self._pos
        if self.decode_attn != "eager":
            mask = visible.view(1, 1, 1, span)
        else:
            mask = torch.where(visible, 0.0, torch.finfo(h.dtype).min).to(h.dtype).view(1, 1, 1, span)
        for layer, k, v in zip(self._decode_stack, self._keys, self._values):
            h = layer_fn(layer, h, mask, text_pos, _LayerKV(k, v, self._pos, span), position_embeddings)
        h = lm.norm(h)
        self._next_token(h[:, -1, :])
        self._pos.add_(1)

    def _decode_eager(self) -> None:
        try:
            self._decode_layers(self._capacity)
        finally:
            self._clear_fused()

    def _clear_fused(self) -> None:
        for f in self._fused:
            f.clear()

    def _decode_runner(self) -> Callable[[], Any]:
        if not self.graphs or "decode" in self.failures:
            return self._decode_eager
        if self._decode_graph is None:
            span = self._capacity
            state = [self._tok, self._pos, self._seen, self._out]
            snapshot = [t.clone() for t in state]

            def once():
                try:
                    self._decode_fn(span)
                finally:
                    self._clear_fused()

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
