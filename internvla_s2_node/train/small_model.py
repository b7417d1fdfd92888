"""A small Qwen3-VL to train from scratch: the real vocabulary, special tokens, chat template
and patching (``core.tiny``), with a body sized by ``SmallSize``.

The default size (hidden 128, 8 text layers, 4 vision blocks, tied embeddings) keeps the
bf16 checkpoint under 50 MB; the 151936 x hidden embedding is most of it.

    python -m internvla_s2_node.train.small_model DIR            # config, processor and random weights
    python -m internvla_s2_node.train.small_model DIR --no-weights
    python -m internvla_s2_node.train.small_model DIR --weights-only --seed 0   # weights for an existing DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

from ..core import tiny

ARCH = "qwen3_vl"


@dataclasses.dataclass(frozen=True)
class SmallSize:
    hidden: int = 128
    layers: int = 8
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    vision_hidden: int = 128
    vision_depth: int = 4
    vision_heads: int = 4
    vision_intermediate: int = 256

    def __post_init__(self) -> None:
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(f"hidden {self.hidden} must split into {self.heads} heads of even width")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must be a multiple of kv_heads {self.kv_heads}")
        if self.vision_hidden % self.vision_heads:
            raise ValueError(f"vision_hidden {self.vision_hidden} must split into {self.vision_heads} heads")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def mrope_section(self) -> list[int]:
        """Temporal, height, width rotary sections summing to head_dim / 2 (real Qwen3-VL: 24, 20, 20 of 64)."""
        half = self.head_dim // 2
        t = half - 2 * (half * 5 // 16)
        return [t, half * 5 // 16, half * 5 // 16]


def make_config(size: SmallSize = SmallSize()):
    """A Qwen3VLConfig: the tiny checkpoint's token ids and patching, ``size``'s widths and depths."""
    config = tiny.make_tiny_config(ARCH)
    text, vision = config.text_config, config.vision_config
    text.hidden_size, text.num_hidden_layers, text.intermediate_size = size.hidden, size.layers, size.intermediate
    text.num_attention_heads, text.num_key_value_heads, text.head_dim = size.heads, size.kv_heads, size.head_dim
    text.rope_parameters = {**text.rope_parameters, "mrope_section": size.mrope_section}
    vision.hidden_size, vision.depth, vision.num_heads = size.vision_hidden, size.vision_depth, size.vision_heads
    vision.intermediate_size, vision.out_hidden_size = size.vision_intermediate, size.hidden
    vision.deepstack_visual_indexes = list(range(1, min(size.vision_depth, size.layers)))  # one per early text layer
    return config


def write_files(out, size: SmallSize = SmallSize()) -> pathlib.Path:
    """config.json, generation_config.json and the processor (tokenizer, chat template) in ``out``; no weights."""
    import transformers

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    make_config(size).save_pretrained(out)
    transformers.GenerationConfig(
        bos_token_id=tiny.ENDOFTEXT_ID, eos_token_id=[tiny.IM_END_ID, tiny.ENDOFTEXT_ID], pad_token_id=tiny.ENDOFTEXT_ID,
        do_sample=False,
    ).save_pretrained(out)
    tiny.make_processor(ARCH).save_pretrained(out)
    return out


def write_weights(out, seed: int = 0) -> pathlib.Path:
    """Random weights (fp32, seeded) for the config in ``out``, as model.safetensors."""
    import torch
    import transformers

    out = pathlib.Path(out)
    config = transformers.AutoConfig.from_pretrained(out, local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.Qwen3VLForConditionalGeneration(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").exists() or model.generation_config.save_pretrained(out)
    return out


def compact_tokenizer(src, out) -> None:
    """Write ``src``'s tokenizer.json as vocab.json + merges.txt (+ its added tokens in tokenizer_config.json),
    the slow-tokenizer form released Qwen checkpoints also ship: a third of the size, the same token ids."""
    src, out = pathlib.Path(src), pathlib.Path(out)
    data = json.loads((src / "tokenizer.json").read_text())
    (out / "vocab.json").write_text(json.dumps(data["model"]["vocab"], ensure_ascii=False, separators=(",", ":")))
    merges = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = json.loads((src / "tokenizer_config.json").read_text())
    keys = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    config["added_tokens_decoder"] = {str(t["id"]): {k: t[k] for k in keys} for t in data["added_tokens"]}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "tokenizer.json").unlink(missing_ok=True)


def parameter_count(size: SmallSize = SmallSize()) -> int:
    import torch
    import transformers

    with torch.device("meta"):
        model = transformers.Qwen3VLForConditionalGeneration(make_config(size))
    return sum(p.numel() for p in model.parameters())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m internvla_s2_node.train.small_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-weights", action="store_true", help="config and processor only")
    p.add_argument("--weights-only", action="store_true", help="random weights for the config already in OUT")
    for field in dataclasses.fields(SmallSize):
        p.add_argument("--" + field.name.replace("_", "-"), type=int, default=field.default)
    args = p.parse_args(argv)
    size = SmallSize(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SmallSize)})
    if not args.weights_only:
        write_files(args.out, size)
        (args.out / "small_size.json").write_text(json.dumps(dataclasses.asdict(size), indent=2) + "\n")
    if not args.no_weights:
        write_weights(args.out, args.seed)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
