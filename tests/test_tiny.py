"""Tiny checkpoints: real vocabulary and ids, real patching, templates, atomic cache, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from fixtures_models import ARCHS, tiny_checkpoint  # noqa: F401
from safetensors.torch import load_file
from transformers import AutoConfig, AutoProcessor

from internvla_s2_node.core import tiny

torch.set_num_threads(1)

SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
LAST_ADDED = {"qwen2_vl": None, "qwen2_5_vl": ("<|file_sep|>", 151664), "qwen3_vl": ("</think>", 151668)}
LAST_ADDED["qwen3_vl_moe"] = LAST_ADDED["qwen3_vl"]


@pytest.fixture(scope="module")
def processors(tiny_checkpoint):
    return {arch: AutoProcessor.from_pretrained(tiny_checkpoint(arch), local_files_only=True) for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_special_token_ids_match_the_released_tokenizers(processors, arch):
    tok = processors[arch].tokenizer
    assert {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_IDS} == SPECIAL_IDS
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id, tok.bos_token) == ("<|im_end|>", 151645, 151643, None)
    last = LAST_ADDED[arch]
    assert len(tok) == (151657 if last is None else last[1] + 1)
    if last:
        assert tok.convert_tokens_to_ids(last[0]) == last[1]
    # The real byte-level BPE: ids as on the released checkpoints; digits split one by one.
    assert tok("Hello world").input_ids == [9707, 1879]
    assert tok("<|im_start|>user\n12").input_ids == [151644, 872, 198, 16, 17]
    assert tok.decode(tok("move ↑ then ← STOP").input_ids) == "move ↑ then ← STOP"


@pytest.mark.parametrize("arch", ARCHS)
def test_chat_template(processors, arch):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Go."}, {"type": "image"}, {"type": "text", "text": " Now?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "↓"}]},
        {"role": "user", "content": [{"type": "image"}]},
    ]
    text = processors[arch].apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" if arch.startswith("qwen2") else ""
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    assert text == (
        f"{system}<|im_start|>user\nGo.{image} Now?<|im_end|>\n<|im_start|>assistant\n↓<|im_end|>\n"
        f"<|im_start|>user\n{image}<|im_end|>\n<|im_start|>assistant\n"
    )
    with_system = [{"role": "system", "content": "Be brief."}, messages[0]]
    text = processors[arch].apply_chat_template(with_system, tokenize=False, add_generation_prompt=False)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nGo.")
    assert text.count("system") == 1 and text.endswith("<|im_end|>\n")


@pytest.mark.parametrize("arch, tokens, patch", [("qwen3_vl", 144, 16), ("qwen3_vl_moe", 144, 16), ("qwen2_5_vl", 196, 14), ("qwen2_vl", 196, 14)])
def test_image_token_count_of_a_384_frame(processors, arch, tokens, patch):
    from PIL import Image

    out = processors[arch](images=[Image.new("RGB", (384, 384), (90, 120, 30))], text=["<|vision_start|><|image_pad|><|vision_end|>"], return_tensors="pt")
    assert int((out["input_ids"] == 151655).sum()) == tokens
    grid = out["image_grid_thw"][0].tolist()
    assert grid[0] == 1 and grid[1] * grid[2] == 4 * tokens
    assert out["pixel_values"].shape[1] == 3 * 2 * patch * patch  # channels x temporal x patch x patch


@pytest.mark.parametrize("arch", ARCHS)
def test_config_and_files(tiny_checkpoint, arch):
    path = tiny_checkpoint(arch)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    text, vision = config.text_config, config.vision_config
    assert config.model_type == arch and config.tie_word_embeddings
    assert (text.vocab_size, text.hidden_size, text.num_hidden_layers) == (151936, 64, 2)
    assert (text.num_attention_heads, text.num_key_value_heads, text.intermediate_size) == (4, 2, 128)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert (vision.depth, vision.spatial_merge_size, vision.temporal_patch_size) == (2, 2, 2)
    assert vision.patch_size == (16 if arch.startswith("qwen3") else 14)
    if arch.startswith("qwen3"):
        assert all(0 <= i < vision.depth for i in vision.deepstack_visual_indexes)
        assert len(vision.deepstack_visual_indexes) <= text.num_hidden_layers
    if arch == "qwen3_vl_moe":
        assert (text.num_experts, text.num_experts_per_tok) == (4, 2)
    if arch == "qwen2_5_vl":
        assert all(0 <= i < vision.depth for i in vision.fullatt_block_indexes)
    (weights,) = path.glob("*.safetensors")
    assert weights.stat().st_size < 45e6  # embeddings tied: one 151936 x 64 table
    assert not any(k.startswith("lm_head") for k in load_file(weights))
    generation = json.loads((path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [151645, 151643] and generation["pad_token_id"] == 151643
    assert not list(path.glob("*.py"))  # nothing that would need remote code


def test_unknown_arch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="qwen3_vl_moe"):
        tiny.make_tiny_checkpoint("llava", tmp_path)
    with pytest.raises(ValueError):
        tiny.default_tiny_checkpoint("qwen4")


def fake_builder(calls: list, fail: bool = False):
    def build(arch, out_dir, seed=0):
        calls.append(arch)
        time.sleep(0.2)  # long enough for the other builders to pile up on the lock
        if fail:
            (Path(out_dir) / "half-written").write_text("x")
            raise RuntimeError("build failed")
        (Path(out_dir) / "config.json").write_text("{}")
        return Path(out_dir)

    return build


def test_default_checkpoint_is_built_once_and_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERNVLA_S2_CACHE", str(tmp_path / "cache"))
    calls: list = []
    monkeypatch.setattr(tiny, "make_tiny_checkpoint", fake_builder(calls))
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(tiny.default_tiny_checkpoint("qwen2_vl"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = tmp_path / "cache" / f"tiny-qwen2_vl-{tiny.TINY_VERSION}"
    assert results == [final] * 4 and calls == ["qwen2_vl"]
    assert (final / "config.json").exists()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir() and p != final]  # no temp dirs left


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERNVLA_S2_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tiny, "make_tiny_checkpoint", fake_builder([], fail=True))
    with pytest.raises(RuntimeError, match="build failed"):
        tiny.default_tiny_checkpoint("qwen3_vl")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]


def test_console_script_is_deterministic_per_seed(tmp_path, tiny_checkpoint):
    script = Path(sys.executable).parent / "internvla-s2-make-tiny"
    out = tmp_path / "tiny-q2"
    env = {**os.environ, "INTERNVLA_S2_CACHE": str(tiny.cache_dir()), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(script), "--arch", "qwen2_vl", str(out), "--seed", "0"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {p.name for p in out.iterdir()}
    reference = load_file(tiny_checkpoint("qwen2_vl") / "model.safetensors")
    made = load_file(out / "model.safetensors")
    assert reference.keys() == made.keys()
    assert all(torch.equal(reference[k], made[k]) for k in reference)
    bad = subprocess.run([str(script), "--arch", "llava", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
