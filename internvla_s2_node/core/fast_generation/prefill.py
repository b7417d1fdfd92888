"""Prefill: the prompt through the text model into the static cache; compiled once (dynamic length) and
replayed from one CUDA graph per bucket on CUDA (with prefix reuse, one more per bucket for the rows after
a kept prefix, whatever its length)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .frames import _FrameEntry
from .graphs import _capture
from .kv import _layer_call, _LayerKV
from .prompt_inputs import _Prompt
from .settings import INSTRUCTION_MARGIN, PREFILL_BUCKET


class PrefillMixin:
    """``FastGenerator``'s prefill (state: ``_prefill_graphs``, ``_prefill_fn``)."""

    def _prefill(self, prompt: _Prompt, entries: list[_FrameEntry]) -> None:
        """Queue the prompt through the text model; its first token is read by ``_read_tokens``."""
        L, bucket, n_img, dev_host = prompt.length, prompt.bucket, prompt.n_image_tokens, prompt.device_rows
        start, skip = prompt.start, prompt.image_skip
        dev_ids = dev_host[0:1]
        img_index = dev_host[4, :n_img]
        embeds = self.lm.embed_tokens(dev_ids)
        n_deep = 0
        if entries:
            merged = torch.cat([e.feats[0] for e in entries], dim=0).to(embeds.dtype)
            if merged.shape[0] != skip + n_img:
                raise ValueError(f"image features ({merged.shape[0]}) and image tokens ({skip + n_img}) do not match")
            embeds[0, img_index] = merged[skip:]
            n_deep = len(entries[0].feats[1])
            for j, buf in enumerate(self._deep_buffers(n_deep)):
                buf[:, :bucket].zero_()
                buf[0, img_index] = torch.cat([e.feats[1][j] for e in entries], dim=0)[skip:].to(buf.dtype)
        self._embeds[:, :bucket].copy_(embeds)
        self._mpos[:, :, :bucket].copy_(dev_host[1:4].unsqueeze(1))
        self._last.fill_(L - 1 - start)
        if start:
            self._start.fill_(start)
        if self.repetition_penalty != 1.0:
            self._seen.zero_()
            self._seen[prompt.all_ids] = True
        run = self._prefill_runner(bucket, n_deep, reuse=start > 0)
        run()
        self._pos.fill_(L)
        self._delta.fill_(prompt.delta)

    def _cover_prefill(self, longest: int, check: Callable[[], None] | None = None) -> None:
        """Capture the prefill graphs of other instructions' prompts (up to ``INSTRUCTION_MARGIN`` tokens
        longer than the warm-up's longest, ``longest``, within the cache), every bucket up to there, from
        position 0 and (prefix reuse) after a kept prefix; from position 0 also for an episode's first calls
        and the first fast call after the switch from the plain path, which has the whole history and nothing
        kept. The graphs do not depend on what the buffers hold; the K/V they write are dropped."""
        if not self.graphs or "prefill" in self.failures:
            return
        n_deep = len(self._deep)  # every prompt has frames: the model's deepstack depth
        limit = self._capacity - self.max_new_tokens
        self._last.zero_()
        self._start.zero_()
        top = min(-(-(longest + INSTRUCTION_MARGIN) // PREFILL_BUCKET) * PREFILL_BUCKET, limit)
        for reuse in (False, True) if self.prefix_reuse else (False,):
            for bucket in range(PREFILL_BUCKET, top + 1, PREFILL_BUCKET):
                if check is not None:
                    check()
                self._prefill_runner(bucket, n_deep, reuse)
        self._kv_prompt = None

    def _prefill_runner(self, bucket: int, n_deep: int, reuse: bool = False) -> Callable[[], Any]:
        key = (bucket, n_deep) if not reuse else (bucket, n_deep, "reuse")
        if not self.graphs or "prefill" in self.failures:
            return lambda: self._prefill_layers(bucket, n_deep, reuse=reuse)
        graph = self._prefill_graphs.get(key)
        if graph is None:
            if self._prefill_fn is not self._prefill_layers:
                try:
                    self._prefill_fn(bucket, n_deep, reuse=reuse)  # compiles on first use (idempotent: same inputs)
                except Exception as exc:  # noqa: BLE001
                    self._note_failure("compile_prefill", exc)
                    self._prefill_fn = self._prefill_layers
            try:
                graph = _capture(lambda: self._prefill_fn(bucket, n_deep, reuse=reuse), self.device, self.fake_graphs, self._pool)
            except Exception as exc:  # noqa: BLE001
                self._note_failure("prefill", exc)
                return lambda: self._prefill_layers(bucket, n_deep, reuse=reuse)
            self._prefill_graphs[key] = graph
            self.stats["prefill_graphs_captured"] += 1
        return graph.replay

    def _prefill_layers(self, bucket: int, n_deep: int, layer_fn=_layer_call, reuse: bool = False) -> None:
        """The prompt (with ``reuse``, its rows from the device position ``_start``) through the text model
        (static buffers in, first token out); compiled (whole, or ``layer_fn`` per layer) and graph-captured
        on CUDA."""
        lm = self.lm
        h = self._embeds[:, :bucket]
        text_pos = self._text_pos[:, :bucket]
        position_embeddings = lm.rotary_emb(h, self._mpos[:, :, :bucket])
        mask = None  # sdpa / flash: causal without a mask
        rows, span = None, 0
        if reuse:  # as in decode: K/V written at device positions, queries masked over the whole cache
            rows, span = torch.arange(bucket, device=h.device) + self._start, self._capacity
            text_pos = rows.view(1, bucket)
            visible = torch.arange(span, device=h.device).view(1, -1) <= rows.view(-1, 1)
            mask = visible if self.attn != "eager" else torch.where(visible, 0.0, torch.finfo(h.dtype).min).to(h.dtype)
            mask = mask.view(1, 1, bucket, span)
        elif self.attn == "eager":
            mask = torch.full((bucket, bucket), torch.finfo(h.dtype).min, dtype=h.dtype, device=h.device).triu(1).view(1, 1, bucket, bucket)
        deep = self._deep[:n_deep]
        for i, (layer, k, v) in enumerate(zip(self._prefill_stack, self._keys, self._values)):
            h = layer_fn(layer, h, mask, text_pos, _LayerKV(k, v, rows, span), position_embeddings)
            if i < n_deep:
                h = h + deep[i][:, :bucket]  # deepstack: zero rows except at the image tokens
        h = lm.norm(h)
        self._next_token(h.index_select(1, self._last)[:, -1, :])
