"""A probe, not a product setting: the evaluation with the logit of the answer token ``STOP`` lowered by
``--stop-bias`` in both generation paths (plain and fast). It asks how much of the navigator's failure is
its STOP decision: if the robot reaches the goal's 3 m radius far more often when STOP is harder to say
(oracle success up), the paths are good and the stopping is not.

    python benchmarks/navigator_stop_probe.py --stop-bias 3 -- --policy s2 --model internvla_s2_node/assets/navigator \\
        --params-file config/navigator_s2.yaml --episodes EPISODES --out OUT --rank 0 --world-size 2 --no-maps --quiet

Everything after ``--`` goes to ``internvla-s2-eval`` unchanged, in this process (the S2 node runs in the
evaluation's process, so it loads the model through the patched loader).
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import internvla_s2_node.core.backbone as backbone  # noqa: E402

log = logging.getLogger("navigator_stop_probe")


class BiasedHead(torch.nn.Module):
    """The LM head plus a constant bias on the logits (its ``weight`` stays the head's, for the tied copy)."""

    def __init__(self, head: torch.nn.Module, bias: torch.Tensor) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("bias", bias, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.head(hidden)
        return out + self.bias.to(out.dtype)


def stop_token_id(tokenizer) -> int:
    ids = tokenizer.encode("STOP", add_special_tokens=False)
    if len(ids) != 1:
        raise SystemExit(f"navigator_stop_probe: 'STOP' is {len(ids)} tokens for this tokenizer; the probe needs one")
    return ids[0]


def patch_loader(stop_bias: float) -> None:
    load = backbone.load_backbone

    def biased_load(*args, **kwargs):
        loaded = load(*args, **kwargs)
        head = loaded.model.lm_head
        bias = torch.zeros(head.weight.shape[0], device=head.weight.device)
        token = stop_token_id(loaded.processor.tokenizer)
        bias[token] = -stop_bias
        loaded.model.lm_head = BiasedHead(head, bias)
        log.warning("probe: the logit of STOP (token %d) is lowered by %g", token, stop_bias)
        return loaded

    backbone.load_backbone = biased_load  # core.engine imports it when it loads


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stop-bias", type=float, required=True, help="subtract this from the STOP token's logit")
    args = ap.parse_args(argv[:split])
    if split == len(argv):
        ap.error("put the evaluation's arguments after --")
    patch_loader(args.stop_bias)
    from internvla_s2_node.evaluation.cli import main as evaluate

    return evaluate(argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(main())
