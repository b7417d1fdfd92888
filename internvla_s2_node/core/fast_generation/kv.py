"""The static KV cache: preallocated per layer, written by prefill and decode, grown in steps."""

from __future__ import annotations

import torch

from .settings import CAPACITY_STEP, PREFILL_BUCKET


class _LayerKV:
    """One decoder layer's cache object. Prefill from position 0 (``pos`` None): the prompt's K/V are
    written at ``[0, n)`` and returned as they are. Decode, and prefill after a kept prefix (prefix reuse):
    the K/V written at the device positions ``pos``, the first ``span`` slots returned (the mask hides
    what is beyond each query's position). ``layer_idx`` is not used (each layer gets its own object), so
    that one compiled layer serves every layer."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor | None = None, span: int = 0) -> None:
        self.k, self.v, self.pos, self.span = k, v, pos, span

    def update(self, key_states, value_states, layer_idx=None, *args, **kwargs):
        k, v = self.k, self.v
        if self.pos is None:
            n = key_states.shape[2]
            k[:, :, :n].copy_(key_states)
            v[:, :, :n].copy_(value_states)
            return key_states, value_states
        k.index_copy_(2, self.pos, key_states.to(k.dtype))
        v.index_copy_(2, self.pos, value_states.to(v.dtype))
        return k[:, :, : self.span], v[:, :, : self.span]


def _layer_call(layer, h, mask, text_pos, kv, position_embeddings):
    """One decoder layer (the unit ``torch.compile`` compiles once for all layers, ``compile_scope='layer'``)."""
    out = layer(h, attention_mask=mask, position_ids=text_pos, past_key_values=kv, use_cache=True, position_embeddings=position_embeddings)
    return out[0] if isinstance(out, tuple) else out


class StaticBuffersMixin:
    """``FastGenerator``'s static device buffers (KV, embeddings, deepstack rows, mrope positions)."""

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
        self._kv_prompt = None  # nothing cached to reuse in the new buffers
        self._prefill_graphs.clear()
        self._decode_graph = None
        if not self._vision_graphs:
            self._pool.renew()

    def _deep_buffers(self, n: int) -> list[torch.Tensor]:
        while len(self._deep) < n:
            self._deep.append(torch.zeros(1, self._capacity, self.hidden, dtype=self.dtype, device=self.device))
        return self._deep[:n]
