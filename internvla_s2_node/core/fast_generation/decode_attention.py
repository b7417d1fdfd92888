"""Decode attention (one query token over the static cache) as two Triton kernels, for CUDA.

The default decode attention (``decode.DECODE_ATTENTION``) is two batched matmuls around a fused masked
softmax: three kernels per layer, together 11.6 µs of each layer of the 8B decode token on the H200
(``benchmarks/results/decode_profile_nvidia-h200_2026-12-03.log``), for a few MB of K/V. Here the cache is
cut into chunks; one program per (KV head, chunk) attends the KV head's query heads over the chunk's
visible slots with an online softmax in fp32 (slots the mask hides are not read), and a second kernel
merges the chunks. A custom op, so ``torch.compile`` calls it as it is and a CUDA graph captures both
launches. Off by default until it is measured on a GPU (``FastGenerator(decode_attention=DECODE_ATTENTION_TRITON)``).

The softmax is not normalised before the weighted sum, and the scores stay in fp32, so in bf16 the result
rounds differently from the matmul-softmax-matmul path (in fp32 they agree to rounding, see the tests).
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs without Triton
    triton = None

CHUNK, BLOCK, WARPS = 128, 64, 4  # slots per program, slots per inner step
# Triton's interpreter (the CPU tests) multiplies bf16 tiles wrongly in ``tl.dot`` (a 16x16 product was off by
# 2e10 with Triton 3.8.0), so under it the tiles are made fp32 first; compiled kernels take bf16 as it is.
_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def available(device: torch.device) -> bool:
    """CUDA with Triton (or, for the tests, Triton's interpreter on the CPU)."""
    return triton is not None and (device.type == "cuda" or _INTERPRETED)


if triton is not None:

    @triton.jit
    def _chunk_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, part_ptr, stat_ptr, S, stride_kh, stride_ks, scale,
                      GROUPS: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
                      IEEE: tl.constexpr, UPCAST: tl.constexpr):  # fmt: skip
        """Program (kv head, chunk): unnormalised ``sum_s exp(q.k_s - m) v_s``, ``m`` and ``sum_s exp(q.k_s - m)``
        for the ``GROUPS`` query heads of the kv head over the chunk's visible slots."""
        head, chunk = tl.program_id(0), tl.program_id(1)
        chunks = tl.num_programs(1)
        g = tl.arange(0, G_PAD)
        d = tl.arange(0, D)
        g_ok = g < GROUPS
        q = tl.load(q_ptr + (head * GROUPS + g)[:, None] * D + d[None, :], mask=g_ok[:, None], other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
        m = tl.full((G_PAD,), float("-inf"), tl.float32)
        total = tl.zeros((G_PAD,), tl.float32)
        acc = tl.zeros((G_PAD, D), tl.float32)
        base = head.to(tl.int64) * stride_kh
        for s0 in range(chunk * CHUNK, chunk * CHUNK + CHUNK, BLOCK):
            slots = s0 + tl.arange(0, BLOCK)
            in_range = slots < S
            ok = in_range & (tl.load(mask_ptr + slots, mask=in_range, other=0) != 0)
            rows = base + slots[:, None].to(tl.int64) * stride_ks + d[None, :]
            k = tl.load(k_ptr + rows, mask=ok[:, None], other=0.0)
            if UPCAST:
                k = k.to(tl.float32)
            if IEEE:  # float32 inputs: full-precision products, not TF32
                scores = tl.dot(q, tl.trans(k), input_precision="ieee", out_dtype=tl.float32) * scale
            else:
                scores = tl.dot(q, tl.trans(k), out_dtype=tl.float32) * scale
            scores = tl.where(ok[None, :], scores, float("-inf"))
            m_new = tl.maximum(m, tl.max(scores, 1))
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
            p = tl.exp(scores - shift[:, None])
            alpha = tl.exp(m - shift)
            total = total * alpha + tl.sum(p, 1)
            v = tl.load(v_ptr + rows, mask=ok[:, None], other=0.0)
            if UPCAST:
                v = v.to(tl.float32)
            if IEEE:
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee", out_dtype=tl.float32)
            else:
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, out_dtype=tl.float32)
            m = m_new
        at = (head * chunks + chunk) * G_PAD + g
        tl.store(part_ptr + at[:, None] * D + d[None, :], acc, mask=g_ok[:, None])
        tl.store(stat_ptr + at * 2, m, mask=g_ok)
        tl.store(stat_ptr + at * 2 + 1, total, mask=g_ok)

    @triton.jit
    def _merge_kernel(part_ptr, stat_ptr, out_ptr, CHUNKS, GROUPS: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr, C_PAD: tl.constexpr):
        """Program (query head): the chunks' partial sums merged by their maxima, divided by the total."""
        qh = tl.program_id(0)
        head, g = qh // GROUPS, qh % GROUPS
        c = tl.arange(0, C_PAD)
        d = tl.arange(0, D)
        c_ok = c < CHUNKS
        at = (head * CHUNKS + c) * G_PAD + g
        m = tl.load(stat_ptr + at * 2, mask=c_ok, other=float("-inf"))
        total = tl.load(stat_ptr + at * 2 + 1, mask=c_ok, other=0.0)
        top = tl.max(m, 0)
        w = tl.where(m == float("-inf"), 0.0, tl.exp(m - top))
        part = tl.load(part_ptr + at[:, None] * D + d[None, :], mask=c_ok[:, None], other=0.0)
        out = tl.sum(part * w[:, None], 0) / tl.sum(total * w, 0)
        tl.store(out_ptr + qh * D + d, out.to(out_ptr.dtype.element_ty))


def launch(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """``query`` [H, D], ``key``/``value`` [KV, S, D] (last dim contiguous, same strides), ``mask`` [S] bool:
    the attention output [H, D]. The kernels alone (CUDA tensors, or CPU ones under ``TRITON_INTERPRET=1``)."""
    heads, dim = query.shape
    kv_heads, span = key.shape[0], key.shape[1]
    groups = heads // kv_heads
    g_pad = max(16, triton.next_power_of_2(groups))  # tl.dot needs 16 rows
    chunks = triton.cdiv(span, CHUNK)
    part = torch.empty(kv_heads * chunks * g_pad, dim, dtype=torch.float32, device=query.device)
    stat = torch.empty(kv_heads * chunks * g_pad, 2, dtype=torch.float32, device=query.device)
    out = torch.empty(heads, dim, dtype=query.dtype, device=query.device)
    _chunk_kernel[(kv_heads, chunks)](query, key, value, mask.view(torch.uint8), part, stat, span, key.stride(0), key.stride(1), scale,
                                      GROUPS=groups, G_PAD=g_pad, D=dim, CHUNK=CHUNK, BLOCK=BLOCK, IEEE=query.dtype == torch.float32,
                                      UPCAST=_INTERPRETED and query.dtype != torch.float32,
                                      num_warps=WARPS)  # fmt: skip
    _merge_kernel[(heads,)](part, stat, out, chunks, GROUPS=groups, G_PAD=g_pad, D=dim, C_PAD=triton.next_power_of_2(chunks))
    return out


def reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """The same attention in plain torch, the default decode attention's formula (``decode.DECODE_ATTENTION``):
    ``[B, H, q, D]`` query, ``[B, KV, S, D]`` cache, bool mask broadcastable to ``[B, 1, 1, S]`` (True where a
    slot may be attended; None: all) -> ``[B, q, H, D]``. Plain matmuls and a masked fp32 softmax (which
    ``torch.compile`` fuses), grouped-query heads folded into the query rows."""
    b, h, q, d = query.shape
    kv_heads = key.shape[1]
    qg = query.reshape(b, kv_heads, (h // kv_heads) * q, d)
    scores = torch.matmul(qg, key.transpose(-1, -2)).float() * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    return torch.matmul(probs, value).reshape(b, h, q, d).transpose(1, 2).contiguous()


@torch.library.custom_op("internvla_s2::decode_attention", mutates_args=())
def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """``reference``'s result, by the kernels for one query token of batch 1 on CUDA."""
    return _compute(query, key, value, mask, scale)


def _compute(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    b, h, q, d = query.shape
    usable = available(query.device) and b == 1 and q == 1 and mask.dtype == torch.bool and mask.numel() == key.shape[2]
    if not usable or key.stride(-1) != 1 or key.stride() != value.stride() or d & (d - 1) or d < 16:
        return reference(query, key, value, mask, scale)
    return launch(query.reshape(h, d).contiguous(), key[0], value[0], mask.reshape(-1).contiguous(), scale).view(1, 1, h, d)


@decode_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    b, h, q, d = query.shape
    return query.new_empty(b, q, h, d)


def attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """A transformers attention function over the decode step's bool mask (``[1, 1, 1, S]``)."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return decode_attention(query, key, value, attention_mask, float(scale)), None
