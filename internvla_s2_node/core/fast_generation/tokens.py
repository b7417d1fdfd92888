"""Tokens: the next token from the last hidden state (lm_head, repetition penalty, argmax) and reading
them back, the next decode step queued before the previous token is read."""

from __future__ import annotations

import time

import torch

from .gemv import gemv
from .graphs import _DoneEvent


class TokensMixin:
    """``FastGenerator``'s token choice and reading (state: ``_out``, ``_seen``, ``_host_tokens``; ``gemv``: the
    output projection by the Triton GEMV)."""

    def _next_token(self, hidden_last: torch.Tensor) -> None:
        head = self.model.lm_head
        logits = (gemv(hidden_last, head.weight, head.bias) if self.gemv else head(hidden_last)).float()
        if self.repetition_penalty != 1.0:
            p = self.repetition_penalty
            logits = torch.where(self._seen.view(1, -1), torch.where(logits < 0, logits * p, logits / p), logits)
        nxt = torch.argmax(logits, dim=-1)
        self._out.copy_(nxt)
        self._tok.copy_(nxt.view(1, 1))
        if self.repetition_penalty != 1.0:
            self._seen.index_fill_(0, nxt, True)

    def _read_tokens(self) -> tuple[list[int], float]:
        """The prefill's token, then decode steps until EOS or ``_token_limit`` (``max_new_tokens`` but in a
        warm-up); also when the first token was read (``perf_counter``). With graphs the next step is
        queued before the previous token is read (no host round trip between steps on CUDA); after an EOS
        one queued step is scratch work, finished before the next call's GPU work."""
        if not self.graphs or "decode" in self.failures:
            new_ids = [int(self._out.item())]
            first_at = time.perf_counter()
            if new_ids[0] not in self.eos_ids:
                self._decode_loop(new_ids)
            return new_ids, first_at
        n = self._token_limit
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
        while len(new_ids) < self._token_limit:
            run()
            tok = int(self._out.item())
            new_ids.append(tok)
            if tok in self.eos_ids:
                break
