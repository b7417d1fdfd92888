"""Prompt inputs: the processor's token ids, mrope positions (memoized ``get_rope_index``), the padded
bucket and the image-token index, uploaded in one non-blocking copy."""

from __future__ import annotations

import dataclasses

import torch

from .frames import _FrameEntry
from .settings import PREFILL_BUCKET, ROPE_MEMO, TEXT_MEMO


def template_key(messages) -> tuple | None:
    """What a chat template reads of ``messages``: all of it but the image objects (an image item is
    keyed by its other fields and that it has an image). None where something is not hashable."""
    try:
        key = tuple(
            (tuple(sorted((k, v) for k, v in m.items() if k != "content")),
             m["content"] if isinstance(m["content"], str)
             else tuple(tuple(sorted((k, None if k == "image" else v) for k, v in item.items())) for item in m["content"]))
            for m in messages
        )  # fmt: skip
        hash(key)
    except (TypeError, KeyError, AttributeError):
        return None
    return key


def memo_get(memo, key, make):
    """``memo[key]``, else ``make()`` stored under ``key`` (least recently used dropped past TEXT_MEMO)."""
    hit = memo.get(key)
    if hit is not None:
        memo.move_to_end(key)
        return hit, True
    value = memo[key] = make()
    while len(memo) > TEXT_MEMO:
        memo.popitem(last=False)
    return value, False


@dataclasses.dataclass
class _Prompt:
    length: int
    bucket: int
    delta: int  # mrope position minus text position, for the decode steps
    n_image_tokens: int  # in the prefilled rows
    device_rows: torch.Tensor  # [5, bucket] on the device: ids, 3 mrope rows, image-token index (prefilled rows)
    start: int = 0  # first prefilled position; the K/V before it are the last prompt's (prefix reuse)
    image_skip: int = 0  # image tokens before ``start`` (their feature rows are not scattered again)
    all_ids: torch.Tensor | None = None  # the whole prompt's ids on the device (repetition penalty)



class PromptInputsMixin:
    """``FastGenerator``'s prompt side (state: ``_rope_memo``)."""

    def _chat_text(self, messages) -> str:
        """The processor's chat template on ``messages``, memoized: in an episode's steady state the
        text repeats (same instruction, frame count and conjunction) and rendering it cost ~0.3 ms of host
        time per step on the CPU (benchmarks/results/e2e_dds_cpu_*); the images themselves do not enter it."""
        render = lambda: self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # noqa: E731
        key = template_key(messages)
        if key is None:
            return render()
        text, hit = memo_get(self._text_memo, key, render)
        self.stats["text_hits"] += hit
        return text

    def _token_ids(self, text: str, entries: list[_FrameEntry]) -> list[int]:
        """The processor's input ids: one ``<|image_pad|>`` per image expanded to its token count (the
        tokenizer's ids memoized per text: ~0.6 ms per step on the CPU)."""
        raw, hit = memo_get(self._ids_memo, text, lambda: list(self.tokenizer(text)["input_ids"]))
        self.stats["ids_hits"] += hit
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

    def _reusable_prefix(self, ids: list[int], entries: list[_FrameEntry]) -> int:
        """How many leading positions of this prompt hold the same tokens, and the same frames at its
        image tokens, as the prompt whose K/V the cache holds: rounded down to a bucket, at most all but
        the last token (0 without ``prefix_reuse``)."""
        cached = self._kv_prompt if self.prefix_reuse else None
        if cached is None:
            return 0
        prev_ids, prev_entries = cached
        limit = min(len(prev_ids), len(ids) - 1)
        n = 0
        while n < limit and ids[n] == prev_ids[n]:
            n += 1
        pos, k, img = 0, 0, self.image_token_id
        while pos < n:  # every image that begins in the common prefix must be the same frame
            if ids[pos] != img:
                pos += 1
                continue
            if k >= len(entries) or k >= len(prev_entries) or entries[k] is not prev_entries[k]:
                n = pos
                break
            pos += entries[k].n_tokens
            k += 1
        return n // PREFILL_BUCKET * PREFILL_BUCKET

    def _prompt_inputs(self, ids: list[int], entries: list[_FrameEntry]) -> _Prompt:
        """Host side of the prefill: bucket, mrope positions (``get_rope_index``), image-token index; on
        the device as one upload that does not wait for the GPU (pinned memory). With prefix reuse only
        the rows from ``start`` are prefilled."""
        L = len(ids)
        start = self._reusable_prefix(ids, entries)
        bucket = -(-(L - start) // PREFILL_BUCKET) * PREFILL_BUCKET
        if start and start + bucket + self.max_new_tokens > self._capacity:
            start, bucket = 0, -(-L // PREFILL_BUCKET) * PREFILL_BUCKET  # the cache grows: nothing kept
        self._ensure_capacity(start + bucket + self.max_new_tokens)
        input_ids = torch.tensor([ids], dtype=torch.long)
        mpos, delta = self._position_ids(ids, input_ids, [e.grid for e in entries])
        # Pad at the end: token 0, positions continuing after the last one (real tokens never see them).
        n = L - start
        pad = bucket - n
        last_pos = int(mpos.max()) if L else -1
        cuda = self.device.type == "cuda"
        host = torch.zeros(5, bucket, dtype=torch.long, pin_memory=cuda)
        host[0, :n] = input_ids[0, start:]
        host[1:4, :n] = mpos[:, 0, start:]
        host[1:4, n:] = torch.arange(last_pos + 1, last_pos + 1 + pad)
        img_all = torch.nonzero(input_ids[0] == self.image_token_id).flatten()
        skip = int((img_all < start).sum())
        img_pos = img_all[skip:] - start
        n_img = int(img_pos.numel())
        host[4, :n_img] = img_pos
        all_ids = None
        if self.repetition_penalty != 1.0:
            all_ids = (input_ids[0].pin_memory() if cuda else input_ids[0]).to(self.device, non_blocking=cuda)
        self.stats["prompt_tokens"] += L
        self.stats["prefix_tokens_reused"] += start
        self.last_prefix = (start, L)
        return _Prompt(L, bucket, delta, n_img, host.to(self.device, non_blocking=cuda), start, skip, all_ids)
