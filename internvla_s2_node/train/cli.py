"""``internvla-s2-train``: fine-tune the S2 model on LeRobot-format VLN trajectories.

Single process::

    internvla-s2-train --data traj_data/r2r --model-size 8B --output-dir runs/s2

Several GPUs / nodes (see scripts/train_system2_qwen3vl.sh)::

    torchrun --nproc_per_node 8 -m internvla_s2_node.train.cli --deepspeed scripts/ds_zero2.json ...
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pathlib

from ..cli.errors import ArgumentParser, CliError, UsageError, guarded
from .config import MODEL_SIZES, TrainConfig

PROG = "internvla-s2-train"

_BOOL_FIELDS = ("tune_vision", "tune_merger", "tune_llm", "bf16", "gradient_checkpointing", "shuffle", "progress")


def build_parser() -> argparse.ArgumentParser:
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", action="append", required=True, help="scene folder or folder of scenes; PATH@HEIGHT_CM,FRONT_PITCH,DOWN_PITCH sets its camera setup (repeatable)")
    g.add_argument("--height-cm", type=int, default=defaults["height_cm"])
    g.add_argument("--front-pitch", type=int, default=defaults["front_pitch"])
    g.add_argument("--down-pitch", type=int, default=defaults["down_pitch"])
    g.add_argument("--sample-step", type=int, default=defaults["sample_step"])
    g.add_argument("--num-history", type=int, default=defaults["num_history"])
    g.add_argument("--num-future-steps", type=int, default=defaults["num_future_steps"])
    g.add_argument("--min-goal-frames", type=int, default=defaults["min_goal_frames"])
    g.add_argument("--stop-repeat", type=int, default=defaults["stop_repeat"])
    g.add_argument("--pixel-goal-repeat", type=int, default=defaults["pixel_goal_repeat"], help="each pixel-goal sample this many times")
    g.add_argument("--turn-repeat", type=int, default=defaults["turn_repeat"], help="each turns sample this many times")
    g.add_argument("--pixel-goal-only", action="store_true")
    g.add_argument("--resize-w", type=int, default=defaults["resize_w"])
    g.add_argument("--resize-h", type=int, default=defaults["resize_h"])
    g.add_argument("--min-pixels", type=int, default=defaults["min_pixels"])
    g.add_argument("--max-pixels", type=int, default=defaults["max_pixels"])
    g.add_argument("--on-bad-data", choices=("raise", "skip"), default=defaults["on_bad_data"])
    g.add_argument("--max-samples", type=int, default=None)
    g.add_argument("--num-workers", type=int, default=defaults["num_workers"])
    g.add_argument("--frame-cache", default=None, help="folder where each episode's resized front frames are kept after their first decode (one uint8 .npy per "
                   "episode, resize_w*resize_h*3 bytes a frame); an episode with an unreadable front frame is then skipped whole")
    g.add_argument("--data-flatten", action="store_true", help="sequence packing (refused for Qwen3-VL)")
    m = p.add_argument_group("model")
    m.add_argument("--model", default=None, help="checkpoint directory (overrides --model-size)")
    m.add_argument("--model-size", choices=MODEL_SIZES, default=defaults["model_size"], help="Qwen/Qwen3-VL-{SIZE}-Instruct")
    m.add_argument("--attn-implementation", default=defaults["attn_implementation"], choices=("auto", "flash_attention_2", "sdpa", "eager"))
    m.add_argument("--device", default=defaults["device"], choices=("auto", "cpu", "cuda"))
    for name in _BOOL_FIELDS:
        m.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=defaults[name])
    m.add_argument("--lora", action="store_true")
    m.add_argument("--lora-r", type=int, default=defaults["lora_r"])
    m.add_argument("--lora-alpha", type=int, default=defaults["lora_alpha"])
    m.add_argument("--lora-dropout", type=float, default=defaults["lora_dropout"])
    o = p.add_argument_group("optimisation")
    o.add_argument("--learning-rate", "--lr", type=float, default=defaults["learning_rate"])
    o.add_argument("--vision-lr", type=float, default=defaults["vision_lr"])
    o.add_argument("--merger-lr", type=float, default=defaults["merger_lr"])
    o.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    o.add_argument("--max-grad-norm", type=float, default=defaults["max_grad_norm"])
    o.add_argument("--lr-scheduler", choices=("cosine", "linear", "constant"), default=defaults["lr_scheduler"])
    o.add_argument("--warmup-ratio", type=float, default=defaults["warmup_ratio"])
    o.add_argument("--epochs", type=float, default=defaults["epochs"])
    o.add_argument("--max-steps", type=int, default=None)
    o.add_argument("--time-limit-s", type=float, default=None, help="stop after the step that passes this many seconds of training and save the checkpoint "
                   "(the learning-rate schedule keeps its length: size --max-steps to the time for a full schedule)")
    o.add_argument("--stop-at-step", type=int, default=None, help="stop after this step of the schedule and save, as --time-limit-s "
                   "does (to repeat a run its time limit cut)")
    o.add_argument("--per-device-batch-size", type=int, default=defaults["per_device_batch_size"])
    o.add_argument("--grad-accum", type=int, default=defaults["grad_accum"])
    o.add_argument("--deepspeed", default=None, help="DeepSpeed JSON config (scripts/ds_zero2.json, ds_zero3.json, ds_zero3_offload.json)")
    o.add_argument("--seed", type=int, default=defaults["seed"])
    r = p.add_argument_group("output")
    r.add_argument("--output-dir", required=True)
    r.add_argument("--logging-steps", type=int, default=defaults["logging_steps"])
    r.add_argument("--save-steps", type=int, default=defaults["save_steps"])
    r.add_argument("--save-total-limit", type=int, default=defaults["save_total_limit"])
    r.add_argument("--save-training-state", action="store_true",
                   help="the final save also writes training_state.pt (fp32 weights, optimizer, scheduler, step) for --resume-from")
    r.add_argument("--resume-from", default=None, help="continue the schedule of the run saved in this folder (its training_state.pt; same data, batch and steps)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    for action in p._actions:  # every option's default in --help
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if shown and "%(default)" not in (action.help or ""):
            action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return TrainConfig(**values)


def check_model(cfg: TrainConfig) -> None:
    """Fail before any data or model is loaded when the checkpoint cannot be had (UsageError)."""
    from ..core.backbone import CheckpointError
    from ..core.model_ref import check_model_ref, looks_like_hub_id

    name = cfg.model_name
    download = f"hf download {name} --local-dir checkpoints/{name.split('/')[-1]}"
    if pathlib.Path(name).expanduser().is_dir():
        try:
            check_model_ref(name)
        except CheckpointError as exc:
            raise UsageError(str(exc)) from exc
    elif not looks_like_hub_id(name):
        raise UsageError(f"--model {name}: checkpoint directory not found; pass a directory with config.json and *.safetensors")
    elif os.environ.get("HF_HUB_OFFLINE") == "1" and cfg.model is None:
        raise UsageError(f"no --model given, and the default for --model-size {cfg.model_size}, {name}, is not downloaded "
                         f"(HF_HUB_OFFLINE=1); pass --model DIR, e.g. after `{download}`")
    elif os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UsageError(f"--model {name}: no such directory; pass a checkpoint directory, or if {name} is a "
                         f"Hugging Face hub id, download it first (`{download}`) and pass that directory")


def check_deepspeed(cfg: TrainConfig) -> None:
    import importlib.util
    import sys

    if cfg.deepspeed and "deepspeed" not in sys.modules and importlib.util.find_spec("deepspeed") is None:
        raise CliError("--deepspeed needs DeepSpeed, which is not installed; pip install -r requirements-gpu.txt, "
                       "or train without --deepspeed (plain DDP under torchrun)")


@guarded(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s")
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    check_model(cfg)
    check_deepspeed(cfg)
    from .trainer import train

    result = train(cfg)
    if rank == 0:
        print(f"trained {result.steps} steps, final loss {result.losses[-1]:.4f}; checkpoint: {result.output_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
