"""Training config validation, the CLI, DeepSpeed configs, the global-batch sampler, parts to train, LoRA."""

import json
from pathlib import Path

import pytest
import torch

from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train.cli import build_parser, config_from_args, main
from internvla_s2_node.train.config import TrainConfig
from internvla_s2_node.train.distributed import DistInfo, GlobalBatchSampler, total_steps
from internvla_s2_node.train.model import component_of, param_groups, set_trainable
from internvla_s2_node.train.trainer import load_ds_config, zero_stage

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_upstream_recipe_on_qwen3_vl_8b():
    cfg = TrainConfig(data=["d"], output_dir="o")
    assert cfg.model_name == "Qwen/Qwen3-VL-8B-Instruct"
    assert (cfg.tune_vision, cfg.tune_merger, cfg.tune_llm, cfg.bf16, cfg.gradient_checkpointing) == (True, True, True, True, True)
    assert (cfg.learning_rate, cfg.vision_lr, cfg.lr_scheduler, cfg.sample_step, cfg.num_history, cfg.num_future_steps) == (2e-5, 5e-6, "cosine", 4, 8, 4)
    assert TrainConfig(data=["d"], output_dir="o", model_size="2B").model_name == "Qwen/Qwen3-VL-2B-Instruct"
    assert TrainConfig(data=["d"], output_dir="o", model="/ckpt").model_name == "/ckpt"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(model_size="7B"), "model_size"),
        (dict(data=[]), "data folder"),
        (dict(learning_rate=0), "learning_rate"),
        (dict(tune_vision=False, tune_merger=False, tune_llm=False), "nothing to train"),
        (dict(lora=True, tune_llm=False), "lora"),
        (dict(min_pixels=10, max_pixels=5), "min_pixels"),
        (dict(deepspeed="/no/such.json"), "not found"),
        (dict(on_bad_data="ignore"), "on_bad_data"),
        (dict(warmup_ratio=1.5), "warmup_ratio"),
    ],
)
def test_invalid_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{"data": ["d"], "output_dir": "o", **kwargs})


def test_data_flatten_is_refused_for_qwen3_vl_with_a_reason():
    with pytest.raises(ValueError, match="not supported for Qwen3-VL: packing joins samples"):
        TrainConfig(data=["d"], output_dir="o", data_flatten=True)
    with pytest.raises(ValueError, match="not supported for Qwen3-VL"):
        TrainConfig(data=["d"], output_dir="o", model=str(default_tiny_checkpoint("qwen3_vl")), data_flatten=True)
    assert main(["--data", "d", "--output-dir", "o", "--data-flatten"]) == 2


def test_cli_maps_options_to_the_config():
    args = build_parser().parse_args(
        ["--data", "a", "--data", "b@60,15,15", "--output-dir", "o", "--model-size", "4B", "--no-tune-vision", "--vision-lr", "1e-6",
         "--lora", "--lora-r", "8", "--max-pixels", "200704", "--deepspeed", str(REPO / "scripts/ds_zero2.json"), "--grad-accum", "4"]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.data == ["a", "b@60,15,15"] and cfg.model_name == "Qwen/Qwen3-VL-4B-Instruct"
    assert (cfg.tune_vision, cfg.vision_lr, cfg.lora, cfg.lora_r, cfg.max_pixels, cfg.grad_accum) == (False, 1e-6, True, 8, 200704, 4)


@pytest.mark.parametrize("name, stage, offload", [("ds_zero2.json", 2, False), ("ds_zero3.json", 3, False), ("ds_zero3_offload.json", 3, True)])
def test_deepspeed_configs_fill_auto_values(name, stage, offload):
    cfg = TrainConfig(data=["d"], output_dir="o", deepspeed=str(REPO / "scripts" / name), per_device_batch_size=2, grad_accum=3)
    ds = load_ds_config(cfg, world_size=8)
    assert zero_stage(ds) == stage
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (2, 3, 48)
    assert ds["bf16"]["enabled"] is True and ds["gradient_clipping"] == 1.0
    assert "auto" not in json.dumps(ds)
    assert ("offload_optimizer" in ds["zero_optimization"]) == offload
    if stage == 3:
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_launch_script_uses_torchrun_deepspeed_and_one_size_variable():
    text = (REPO / "scripts" / "train_system2_qwen3vl.sh").read_text()
    for needle in ("MODEL_SIZE=${MODEL_SIZE:-8B}", "NNODES", "NODE_RANK", "MASTER_ADDR", "NPROC_PER_NODE", "torch.distributed.run", "ds_zero2.json", "--deepspeed"):
        assert needle in text


def test_sampler_splits_global_batches_the_same_way_for_any_world_size():
    def batches(world, per_device, accum):
        out = []
        for rank in range(world):
            s = GlobalBatchSampler(10, per_device, DistInfo(rank, world), accum, steps=5, seed=1)
            micro = list(s)
            assert len(micro) == len(s) == 5 * accum
            out.append(micro)
        # global batch of each step: all ranks' micro-batches of that step
        return [sorted(k for r in range(world) for m in out[r][step * accum : (step + 1) * accum] for k in m) for step in range(5)]

    ref = batches(1, 4, 1)
    assert batches(2, 2, 1) == ref and batches(4, 1, 1) == ref and batches(2, 1, 2) == ref and batches(1, 1, 4) == ref
    keys = [k for step in ref for k in step]
    assert {i for i, _ in keys[:10]} == set(range(10)) and {e for _, e in keys[:10]} == {0}  # first epoch: every sample once
    assert total_steps(10, 4, 2.0, None) == 5 and total_steps(10, 4, 2.0, 7) == 7


def test_components_and_learning_rates():
    from transformers import Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(default_tiny_checkpoint("qwen3_vl"), local_files_only=True)
    names = [n for n, _ in model.named_parameters()]
    assert {component_of(n) for n in names} == {"vision", "merger", "llm"}
    assert component_of("model.visual.deepstack_merger_list.0.linear_fc1.weight") == "merger"
    assert component_of("model.visual.blocks.0.attn.qkv.weight") == "vision"
    assert component_of("model.language_model.layers.0.self_attn.q_proj.weight") == "llm"
    cfg = TrainConfig(data=["d"], output_dir="o", tune_vision=False, learning_rate=1e-4, vision_lr=1e-6, merger_lr=3e-5)
    counts = set_trainable(model, cfg)
    assert counts["vision"] == 0 and counts["merger"] > 0 and counts["llm"] > 0
    assert all(not p.requires_grad for n, p in model.named_parameters() if component_of(n) == "vision")
    lrs = {g["name"]: g["lr"] for g in param_groups(model, cfg)}
    assert lrs["merger"] == 3e-5 and lrs["llm"] == 1e-4 and not any(k.startswith("vision") for k in lrs)
    cfg = TrainConfig(data=["d"], output_dir="o", tune_llm=False, vision_lr=1e-6)
    set_trainable(model, cfg)
    assert {g["name"]: g["lr"] for g in param_groups(model, cfg)}["vision"] == 1e-6


def test_lora_run_saves_merged_weights(tmp_path):
    from safetensors.torch import load_file

    from internvla_s2_node.core.backbone import load_backbone
    from internvla_s2_node.train.synthetic import write_synthetic_scene

    data = write_synthetic_scene(tmp_path / "scene", num_episodes=1, length=8, look_down_size=(64, 48))
    base_path = default_tiny_checkpoint("qwen3_vl")
    out = tmp_path / "lora"
    args = [
        "--data", str(data), "--output-dir", str(out), "--model", str(base_path), "--resize-w", "64", "--resize-h", "64",
        "--min-pixels", "1024", "--max-pixels", "4096", "--no-bf16", "--gradient-checkpointing", "--no-progress",
        "--num-workers", "0", "--device", "cpu", "--max-steps", "2", "--lora", "--lora-r", "4", "--lora-alpha", "8",
        "--learning-rate", "1e-2", "--no-tune-vision", "--save-steps", "1",
    ]  # fmt: skip
    assert main(args) == 0
    weights, base = load_file(out / "model.safetensors"), load_file(base_path / "model.safetensors")
    assert not any("lora" in k or "base_layer" in k for k in weights)
    assert set(weights) == set(base)
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(weights[q], base[q])  # the adapter is merged in
    emb = "model.language_model.embed_tokens.weight"
    assert torch.equal(weights[emb], base[emb])  # LoRA leaves the rest of the LLM alone
    assert (out / "checkpoint-1" / "model.safetensors").is_file()
    # what train/README.md says each save holds
    assert json.loads((out / "trainer_state.json").read_text()) == {"step": 2, "total_steps": 2}
    assert json.loads((out / "checkpoint-1" / "trainer_state.json").read_text()) == {"step": 1, "total_steps": 2}
    assert (out / "checkpoint-1" / "train_config.json").is_file() and (out / "data_report.json").is_file()
    load_backbone(str(out), device="cpu")
