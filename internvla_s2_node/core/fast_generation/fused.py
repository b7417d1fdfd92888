"""Fused projections for decoding: one GEMV for q/k/v and one for gate/up, weights re-laid as views."""

from __future__ import annotations

import functools

import torch

from .settings import FastPathUnavailable


class _Call(torch.nn.Module):
    """A stand-in child module (``q_proj`` & co.) that calls ``fn``."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _FusedProjections:
    """One GEMV for several projections of the same input during decoding (q/k/v of an attention,
    gate/up of an MLP: small GEMVs are launch-bound). The modules' weights become row views into one
    fused weight, so this costs no memory and the plain path reads the same values. Stand-ins take the
    modules' places in the decode step's own copies of the layers (``decode._layer_copies``; the model's
    layers are never touched): whichever is called first with an input computes all outputs for that
    input, the others take theirs (any call order)."""

    QKV = ("q_proj", "k_proj", "v_proj")
    GATE_UP = ("gate_proj", "up_proj")

    def __init__(self, parent: torch.nn.Module, names: tuple[str, ...], linear=torch.nn.functional.linear) -> None:
        mods = [getattr(parent, n) for n in names]
        biases = [m.bias for m in mods]
        if any(b is None for b in biases) and not all(b is None for b in biases):
            raise FastPathUnavailable(f"{'/'.join(names)} projections mix bias and no bias")
        self.parent, self.names, self.originals, self.linear = parent, names, mods, linear
        self.sizes = [m.weight.shape[0] for m in mods]
        self.weight = self._fuse([m.weight for m in mods])
        self.bias = None if biases[0] is None else self._fuse(biases)
        self.proxies = tuple(_Call(functools.partial(self._project, i)) for i in range(len(mods)))
        self._input = None
        self._outputs: tuple = ()

    @staticmethod
    def _fuse(params: list[torch.nn.Parameter]) -> torch.Tensor:
        fused = torch.cat([p.detach() for p in params], dim=0)
        start = 0
        for p in params:
            p.data = fused[start : start + p.shape[0]]
            start += p.shape[0]
        return fused

    def _project(self, i: int, x):
        if self._input is not x:
            self._outputs = self.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
            self._input = x
        return self._outputs[i]

    def install(self, copy_of_parent: torch.nn.Module) -> None:
        """The stand-ins in place of the projections in a (shallow) copy of ``parent``."""
        for name, proxy in zip(self.names, self.proxies):
            copy_of_parent._modules[name] = proxy

    def clear(self) -> None:
        """Forget the last input and outputs (after each eager or traced decode step)."""
        self._input, self._outputs = None, ()


def _fuse_layers(layers, fuse_mlp: bool, linear=torch.nn.functional.linear) -> list[_FusedProjections]:
    """The fused projections of ``layers``; ``linear`` computes them (``gemv.gemv``: the Triton GEMV)."""
    fused = []
    for layer in layers:
        for parent, names in ((getattr(layer, "self_attn", None), _FusedProjections.QKV), (getattr(layer, "mlp", None), _FusedProjections.GATE_UP)):
            if parent is None or (names is _FusedProjections.GATE_UP and not fuse_mlp):
                continue
            if all(isinstance(getattr(parent, n, None), torch.nn.Linear) for n in names):
                fused.append(_FusedProjections(parent, names, linear))
    return fused
