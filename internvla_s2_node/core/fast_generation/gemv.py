"""One-token projections (GEMVs) of the decode step as a Triton kernel, for CUDA.

A decode token reads every weight once; the step is bound by memory bandwidth. On the H200, cuBLAS ran the
8B body's decode GEMVs at 2.7-4.1 TB/s and this kernel (two weight rows per program, 1024-wide tiles along
the input, fp32 accumulation) at 3.1-4.4 TB/s: 4.18 against 3.88 ms of GEMVs per token
(``benchmarks/results/decode_gemv_nvidia-h200_2026-12-03.md``). It is a custom op, so ``torch.compile``
calls it as it is and a CUDA graph captures its launch. Inputs with more than one row (prefill) and CPU
tensors take ``torch.nn.functional.linear``.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs without Triton: the fast path keeps F.linear
    triton = None

BLOCK_N, BLOCK_K, WARPS, STAGES = 2, 1024, 4, 2  # the autotuner's choice for 13 of the 15 measured shapes


def available(device: torch.device) -> bool:
    return triton is not None and device.type == "cuda"


if triton is not None:

    @triton.jit
    def _gemv_kernel(x_ptr, w_ptr, b_ptr, y_ptr, N, K, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """y[n] = sum_k w[n, k] x[k] (+ b[n]) for BLOCK_N rows of a row-major ``w``."""
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            col_ok = cols < K
            xk = tl.load(x_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
            acc += w.to(tl.float32) * xk[None, :]
        y = tl.sum(acc, axis=1)
        if HAS_BIAS:
            y += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + rows, y.to(y_ptr.dtype.element_ty), mask=row_ok)


def launch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
    """``out`` [N] = ``weight`` [N, K] @ ``x`` [K] (+ ``bias``): the kernel alone (contiguous CUDA tensors)."""
    n, k = weight.shape
    _gemv_kernel[(triton.cdiv(n, BLOCK_N),)](x, weight, bias if bias is not None else weight, out, n, k, HAS_BIAS=bias is not None,
                                             BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, num_warps=WARPS, num_stages=STAGES)  # fmt: skip
    return out


@torch.library.custom_op("internvla_s2::gemv", mutates_args=())
def gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, by the Triton kernel when ``x`` is one row on CUDA."""
    return _compute(x, weight, bias)


def _compute(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    k = weight.shape[1]
    if triton is None or not x.is_cuda or x.numel() != k or not weight.is_contiguous():
        return torch.nn.functional.linear(x, weight, bias)
    out = torch.empty(*x.shape[:-1], weight.shape[0], dtype=x.dtype, device=x.device)
    launch(x.contiguous().view(k), weight, None if bias is None else bias.contiguous(), out.view(-1))
    return out


@gemv.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.shape[0])


class GemvLinear(torch.nn.Module):
    """Stands in for an ``nn.Linear`` in the decode step's copies of the layers (same weight and bias)."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gemv(x, self.linear.weight, self.linear.bias)
