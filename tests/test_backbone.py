"""Backbone detection and offline loading, on tiny random checkpoints (CPU)."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import numpy as np
import pytest
import torch
from fixtures_models import ARCHS, tiny_backbone, tiny_checkpoint, tiny_image_tokens  # noqa: F401
from PIL import Image
from safetensors.torch import load_file, save_file

from internvla_s2_node.core import backbone as bb
from internvla_s2_node.core.backbone import BackboneKind, CheckpointError, detect_backbone, load_backbone

torch.set_num_threads(1)

CLASS_NAMES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}


def write_config(folder, config: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def copy_checkpoint(src, dst, weights: str = "link"):
    """A copy of a tiny checkpoint's small files; the weights linked, left out, or truncated."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, dst / f.name)
        elif weights == "link":
            (dst / f.name).symlink_to(f)
        elif weights == "truncate":
            (dst / f.name).write_bytes(f.read_bytes()[: 1 << 20])
    return dst


# --- detection -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_detect_from_config_beats_the_folder_name(tmp_path, arch):
    folder = write_config(tmp_path / "checkpoints" / "my-finetune", {"model_type": arch})
    assert detect_backbone(folder) is BackboneKind(arch)
    assert detect_backbone(str(folder)).model_class_name == CLASS_NAMES[arch]
    # A misleading folder name does not matter when there is a config.
    misleading = write_config(tmp_path / "Qwen3-VL-30B-A3B", {"model_type": arch})
    assert detect_backbone(misleading) is BackboneKind(arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_detect_from_architectures_when_model_type_is_odd(tmp_path, arch):
    folder = write_config(tmp_path / "ckpt", {"model_type": "internvla_n1", "architectures": [CLASS_NAMES[arch]]})
    assert detect_backbone(folder) is BackboneKind(arch)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("Qwen/Qwen3-VL-8B-Instruct", BackboneKind.QWEN3_VL),
        ("/models/qwen3-vl-4b", BackboneKind.QWEN3_VL),
        ("Qwen3-VL-30B-A3B-Instruct", BackboneKind.QWEN3_VL_MOE),
        ("Qwen/Qwen3-VL-235B-A22B-Thinking", BackboneKind.QWEN3_VL_MOE),
        ("my-qwen3-moe", BackboneKind.QWEN3_VL_MOE),
        ("qwen2.5-vl-7b", BackboneKind.QWEN2_5_VL),
        ("Qwen/Qwen2.5-VL-3B-Instruct", BackboneKind.QWEN2_5_VL),
        ("Qwen/Qwen2-VL-2B-Instruct", BackboneKind.QWEN2_VL),
        # Upstream's rule: a name without "qwen" falls through to Qwen2-VL, even though the
        # released InternVLA-N1 System-2 is a Qwen2.5-VL fine-tune. Its config.json decides
        # once downloaded (see test_detect_from_config_beats_the_folder_name).
        ("InternRobotics/InternVLA-N1-System2", BackboneKind.QWEN2_VL),
    ],
)
def test_detect_from_name_without_config(name, kind):
    assert detect_backbone(name) is kind


def test_unknown_model_type_names_path_and_expected_types(tmp_path):
    folder = write_config(tmp_path / "llava", {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]})
    with pytest.raises(CheckpointError) as err:
        detect_backbone(folder)
    message = str(err.value)
    assert str(folder) in message and "'llava'" in message
    assert all(arch in message for arch in ARCHS)


def test_unreadable_config_is_a_checkpoint_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        detect_backbone(tmp_path)


# --- loading and generating ------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_load_and_generate_with_one_384_frame(tiny_backbone, arch):
    loaded = tiny_backbone(arch)
    assert loaded.kind is BackboneKind(arch)
    assert type(loaded.model).__name__ == CLASS_NAMES[arch]
    assert (loaded.device, loaded.dtype, loaded.attn_implementation) == (torch.device("cpu"), torch.float32, "sdpa")
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.processor.tokenizer.padding_side == "left"

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (384, 384, 3), dtype=np.uint8))
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Walk to the door."},
                {"type": "image", "image": image},
                {"type": "text", "text": "Where next?"},
            ],
        }
    ]
    inputs = loaded.processor.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    ids = inputs["input_ids"]
    assert int((ids == 151655).sum()) == tiny_image_tokens[arch]
    assert int(inputs["image_grid_thw"].prod()) == 4 * tiny_image_tokens[arch]  # merge 2x2
    assert ids[0, -3:].tolist() == [151644, 77091, 198]  # "<|im_start|>assistant\n"
    with torch.no_grad():
        out = loaded.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    new = out[0, ids.shape[1] :]
    assert 1 <= new.numel() <= 4
    assert isinstance(loaded.processor.decode(new, skip_special_tokens=True), str)


def test_loaded_path_is_the_resolved_directory(tiny_backbone, tiny_checkpoint):
    assert tiny_backbone("qwen3_vl").path == str(tiny_checkpoint("qwen3_vl").resolve())


# --- bad checkpoints -------------------------------------------------------------------


def test_missing_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(CheckpointError, match="not found") as err:
        load_backbone(missing)
    assert str(missing) in str(err.value)


def test_hub_id_says_how_to_download():
    with pytest.raises(CheckpointError) as err:
        load_backbone("InternRobotics/InternVLA-N1-System2")
    message = str(err.value)
    assert "download InternRobotics/InternVLA-N1-System2" in message and "--local-dir" in message


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json") as err:
        load_backbone(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_bin_only_checkpoint_is_refused(tmp_path, tiny_checkpoint):
    folder = copy_checkpoint(tiny_checkpoint("qwen2_vl"), tmp_path / "ckpt", weights="none")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors weights.*pytorch_model\.bin") as err:
        load_backbone(folder, device="cpu")
    assert str(folder) in str(err.value)


def test_truncated_safetensors_is_refused(tmp_path, tiny_checkpoint):
    folder = copy_checkpoint(tiny_checkpoint("qwen2_vl"), tmp_path / "ckpt", weights="truncate")
    with pytest.raises(CheckpointError, match="model.safetensors is not a valid safetensors file") as err:
        load_backbone(folder, device="cpu")
    assert str(folder) in str(err.value)
    assert err.value.__cause__ is not None


def test_auto_map_checkpoint_is_refused(tmp_path, tiny_checkpoint):
    folder = copy_checkpoint(tiny_checkpoint("qwen2_vl"), tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="auto_map") as err:
        load_backbone(folder, device="cpu")
    assert str(folder) in str(err.value) and "remote code" in str(err.value)


def test_weights_of_another_architecture_are_refused(tmp_path, tiny_checkpoint):
    folder = copy_checkpoint(tiny_checkpoint("qwen2_vl"), tmp_path / "ckpt")
    shutil.copy(tiny_checkpoint("qwen3_vl") / "config.json", folder / "config.json")
    with pytest.raises(CheckpointError, match="cannot load Qwen3VLForConditionalGeneration weights") as err:
        load_backbone(folder, device="cpu")
    assert str(folder) in str(err.value)


def test_missing_tensors_are_refused_not_randomly_initialised(tmp_path, tiny_checkpoint):
    """transformers only warns about missing weights; a robot must not run half-random layers."""
    folder = copy_checkpoint(tiny_checkpoint("qwen2_vl"), tmp_path / "ckpt", weights="none")
    tensors = load_file(tiny_checkpoint("qwen2_vl") / "model.safetensors")
    del tensors["model.norm.weight"]  # saved in the released (4.x) key layout
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="weights missing for 1 parameters") as err:
        load_backbone(folder, device="cpu")
    assert "norm.weight" in str(err.value)


def live_transformers(class_name: str):
    """The module object ``import transformers`` gives right now.

    transformers 5's lazy module can re-register itself in sys.modules when a model class
    is first resolved, so a module object imported earlier may be stale: patch this one.
    """
    getattr(sys.modules["transformers"], class_name)
    return sys.modules["transformers"]


@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_vl"])
def test_old_transformers_gives_the_upgrade_message(monkeypatch, tiny_checkpoint, arch):
    name = CLASS_NAMES[arch]
    expected = f"{name} not found. Please upgrade transformers: pip install -U transformers"
    tf = live_transformers(name)
    monkeypatch.setattr(tf, "__version__", "4.56.2")
    with pytest.raises(ImportError) as err:
        load_backbone(tiny_checkpoint(arch), device="cpu")
    assert str(err.value) == expected
    assert any("4.57.0" in note for note in err.value.__notes__)
    # A new enough version string but the class missing (a trimmed or odd build).
    monkeypatch.setattr(tf, "__version__", "4.57.0")
    monkeypatch.setattr(tf, name, None)
    with pytest.raises(ImportError) as err:
        bb.model_class(BackboneKind(arch))
    assert str(err.value) == expected


# --- settings --------------------------------------------------------------------------


def test_sdpa_fallback_warns_once_per_process(monkeypatch, caplog):
    monkeypatch.setattr(bb, "_sdpa_warned", False)
    caplog.set_level(logging.WARNING, logger=bb.__name__)
    cpu = torch.device("cpu")
    assert bb.resolve_attn_implementation("auto", cpu) == "sdpa"
    assert bb.resolve_attn_implementation("auto", cpu) == "sdpa"
    monkeypatch.setattr(bb, "_flash_attn_importable", lambda: False)
    assert bb.resolve_attn_implementation("auto", torch.device("cuda")) == "sdpa"
    warnings = [r for r in caplog.records if r.name == bb.__name__ and "sdpa" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_flash_attention_is_chosen_on_cuda_when_importable(monkeypatch):
    monkeypatch.setattr(bb, "_flash_attn_importable", lambda: True)
    assert bb.resolve_attn_implementation("auto", torch.device("cuda")) == "flash_attention_2"
    assert bb.resolve_attn_implementation("flash_attention_2", torch.device("cuda")) == "flash_attention_2"


def test_explicit_settings_are_validated(monkeypatch):
    cpu = torch.device("cpu")
    assert bb.resolve_attn_implementation("eager", cpu) == "eager"
    with pytest.raises(ValueError, match="flash_attention_2"):
        bb.resolve_attn_implementation("flash_attention_2", cpu)
    with pytest.raises(ValueError, match="unsupported attn_implementation"):
        bb.resolve_attn_implementation("flex", cpu)
    assert bb.resolve_dtype("auto", cpu) == torch.float32
    assert bb.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert bb.resolve_dtype("bf16", cpu) == torch.bfloat16
    assert bb.resolve_dtype(torch.float16, cpu) == torch.float16
    with pytest.raises(ValueError, match="unsupported dtype"):
        bb.resolve_dtype("int8", cpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bb.resolve_device("auto") == cpu
    assert bb.resolve_device("cpu") == cpu
    with pytest.raises(ValueError, match="CUDA is not available"):
        bb.resolve_device("cuda")
    with pytest.raises(ValueError):
        bb.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert bb.resolve_device("auto") == torch.device("cuda")
