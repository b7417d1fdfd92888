"""The training loop: one process, torchrun (DDP) or DeepSpeed, answer-token loss over the global batch."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import torch

from . import model as model_setup
from .collate import IGNORE_INDEX, PadCollator, count_label_tokens
from .config import TRAINING_STATE, TrainConfig
from .dataset import NoSamples, prepare_data
from .distributed import DistInfo, GlobalBatchSampler, all_reduce_sum, barrier, init_distributed, shutdown, total_steps
from .save import prune_checkpoints, save_checkpoint

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    output_dir: Path
    steps: int
    losses: list[float]
    data_report: dict


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """Sequence positions (1-D, shared by the batch) whose next token is an answer token in some row."""
    return torch.nonzero((labels[:, 1:] != IGNORE_INDEX).any(dim=0)).flatten()


class AnswerHead:
    """Computes the LM head's logits only at answer tokens.

    ``logits_to_keep`` keeps positions shared by the whole batch, the union of every row's answer
    positions: with right padding and prompts of different lengths that is tens of positions per row,
    almost all without a label, and each costs a vocabulary-wide row of logits (151,936 for Qwen). A
    pre-hook on the head picks the ``rows`` mask's hidden states, so the head returns
    ``(answer tokens, vocab)``: the same logits for the positions that carry a loss, none for the rest.
    """

    def __init__(self, head: torch.nn.Module) -> None:
        self.rows: torch.Tensor | None = None  # (batch, kept positions) bool, set before each forward
        head.register_forward_pre_hook(self._select)

    def _select(self, module, args):
        if self.rows is None:
            return None
        (hidden, *rest) = args
        return (hidden[self.rows], *rest)


def make_scheduler(optimizer, cfg: TrainConfig, steps: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = int(math.ceil(cfg.warmup_ratio * steps))
    if cfg.lr_scheduler == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, steps)
    if cfg.lr_scheduler == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, steps)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def make_optimizer(groups: list[dict], cfg: TrainConfig, ds_config: dict | None):
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    if ds_config and _offloads_optimizer(ds_config):
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=cfg.learning_rate, betas=betas)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=betas)


def _offloads_optimizer(ds_config: dict) -> bool:
    offload = ds_config.get("zero_optimization", {}).get("offload_optimizer", {}) or {}
    return offload.get("device", "none") not in ("none", None)


def load_ds_config(cfg: TrainConfig, world_size: int) -> dict:
    """The DeepSpeed JSON with its ``"auto"`` entries filled from the training config."""
    config = json.loads(Path(cfg.deepspeed).read_text())
    fill = {
        "train_micro_batch_size_per_gpu": cfg.per_device_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.per_device_batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.max_grad_norm,
    }
    for key, value in fill.items():
        if config.get(key, "auto") == "auto":
            config[key] = value
    for key in ("bf16", "fp16"):
        if config.get(key, {}).get("enabled") == "auto":
            config[key]["enabled"] = cfg.bf16 if key == "bf16" else False
    config.pop("optimizer", None)  # ours, with per-component learning rates
    config.pop("scheduler", None)
    return config


def zero_stage(ds_config: dict | None) -> int:
    return int((ds_config or {}).get("zero_optimization", {}).get("stage", 0))


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.info: DistInfo = init_distributed(cfg.device, use_deepspeed=bool(cfg.deepspeed))
        torch.manual_seed(cfg.seed)
        self.out = Path(cfg.output_dir)
        self.ds_config = load_ds_config(cfg, self.info.world_size) if cfg.deepspeed else None
        self._check_ds()
        self._ds_keepalive = self._hf_ds_config()
        self.model, self.processor, self.kind = model_setup.load_model(cfg, self.info.device, zero3=zero_stage(self.ds_config) == 3)
        if cfg.lora:
            self.model = model_setup.apply_lora(self.model, cfg)
        self.trainable = model_setup.set_trainable(self.model, cfg)
        if cfg.gradient_checkpointing:
            model_setup.enable_gradient_checkpointing(self.model)
        self.answer_head = AnswerHead(self.model.get_output_embeddings())
        self.dataset, self.data_report = self._prepare_data()
        self._fill_frame_cache()
        self.steps = total_steps(len(self.dataset), self.global_batch, cfg.epochs, cfg.max_steps)
        self.optimizer = make_optimizer(model_setup.param_groups(self.model, cfg), cfg, self.ds_config)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.steps)
        self.start_step, self.elapsed0 = self._resume() if cfg.resume_from else (0, 0.0)
        self.engine = self._wrap()
        self.autocast = cfg.bf16 and not cfg.deepspeed and self.info.device.type == "cuda"
        if cfg.bf16 and self.info.device.type != "cuda" and self.info.is_main:
            log.warning("bf16 autocast is used on CUDA only; training in float32 on %s", self.info.device)

    def _prepare_data(self):
        """The dataset and its report; when nothing is left to train on, the report is still written."""
        try:
            return prepare_data(self.cfg, self.processor)
        except NoSamples as exc:
            if self.info.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                (self.out / "data_report.json").write_text(json.dumps(exc.report, indent=2) + "\n")
            raise

    def _fill_frame_cache(self) -> None:
        if not self.cfg.frame_cache or self.cfg.num_workers < 1:
            return
        start = time.perf_counter()
        filled = self.dataset.fill_frame_cache(self.cfg.num_workers, self.info.rank, self.info.world_size)
        barrier(self.info)
        if filled and self.info.is_main:
            log.info("frame cache: decoded %d episodes (this rank's share) with %d processes in %.0f s",
                     filled, self.cfg.num_workers, time.perf_counter() - start)

    def _resume(self) -> tuple[int, float]:
        """Weights, optimizer, scheduler and RNG from ``resume_from``'s training state; the step to go on from."""
        path = Path(self.cfg.resume_from) / TRAINING_STATE
        state = torch.load(path, map_location=self.info.device, weights_only=True)  # tensors and numbers only, no code
        saved = (state["total_steps"], state["global_batch"], state["samples"])
        if state["step"] >= state["total_steps"]:
            raise ValueError(f"{path} is of a finished run ({state['step']} of {state['total_steps']} steps): nothing to resume")
        if saved != (self.steps, self.global_batch, len(self.dataset)):
            raise ValueError(
                f"{path} is of a run of {saved[0]} steps of global batch {saved[1]} over {saved[2]} samples; this run has "
                f"{self.steps}, {self.global_batch} and {len(self.dataset)}: resume with the same data, batch and steps"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if self.info.is_main:
            log.info("resuming at step %d of %d from %s", state["step"], self.steps, path)
        return int(state["step"]), float(state["elapsed_s"])

    def _save_training_state(self, out: Path, step: int, elapsed: float) -> None:
        model = {k: v.detach().float() for k, v in self.model.state_dict().items()}
        state = {
            "step": step, "total_steps": self.steps, "global_batch": self.global_batch, "samples": len(self.dataset),
            "elapsed_s": elapsed, "model": model, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng_cpu": torch.get_rng_state(),
        }  # fmt: skip
        tmp = out / (TRAINING_STATE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(out / TRAINING_STATE)

    @property
    def global_batch(self) -> int:
        return self.cfg.per_device_batch_size * self.cfg.grad_accum * self.info.world_size

    def _check_ds(self) -> None:
        if self.cfg.lora and zero_stage(self.ds_config) == 3:
            raise ValueError("LoRA with ZeRO-3 is not supported (saving merges LoRA into full weights); use ZeRO-2")

    def _hf_ds_config(self):
        if zero_stage(self.ds_config) != 3:
            return None
        from transformers.integrations import HfDeepSpeedConfig

        return HfDeepSpeedConfig(self.ds_config)  # must stay alive: from_pretrained then builds partitioned

    def _wrap(self):
        if self.ds_config is not None:
            import deepspeed

            engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler, config=self.ds_config
            )
            return engine
        if self.info.distributed:
            device_ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            return torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        return self.model

    def loader(self):
        sampler = GlobalBatchSampler(
            len(self.dataset), self.cfg.per_device_batch_size, self.info, self.cfg.grad_accum, self.steps, self.cfg.seed, self.cfg.shuffle,
            start_step=self.start_step,
        )
        pad_id = self.processor.tokenizer.pad_token_id
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=PadCollator(pad_id if pad_id is not None else 0),
            num_workers=self.cfg.num_workers,
            pin_memory=self.info.device.type == "cuda",
            persistent_workers=False,
        )

    def forward_sum(self, batch: dict) -> torch.Tensor:
        """Summed cross-entropy over the batch's answer tokens (logits are computed only where a label follows)."""
        batch = {k: v.to(self.info.device, non_blocking=True) for k, v in batch.items()}
        if "pixel_values" in batch and batch["pixel_values"].dtype == torch.uint8:
            batch["pixel_values"] = self.dataset.patching.normalize(batch["pixel_values"])  # see train/pixels.py
        if "pixel_values" in batch and self.ds_config is not None and self.cfg.bf16:
            batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
        labels = batch.pop("labels")
        keep = answer_positions(labels)
        targets = labels[:, 1:][:, keep]  # IGNORE_INDEX where this row has no answer token there
        self.answer_head.rows = targets != IGNORE_INDEX
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        try:
            with ctx:
                logits = self.engine(**batch, logits_to_keep=keep).logits  # (answer tokens, vocab): see AnswerHead
        finally:
            rows, self.answer_head.rows = self.answer_head.rows, None
        return torch.nn.functional.cross_entropy(logits.float(), targets[rows], reduction="sum")

    def train_step(self, micro_batches: list[dict]) -> tuple[float, float, int]:
        """One optimizer step over this rank's micro-batches; returns (global loss, grad norm, label tokens)."""
        local_tokens = sum(count_label_tokens(b) for b in micro_batches)
        tokens = int(all_reduce_sum(torch.tensor(float(local_tokens), device=self.info.device), self.info).item())
        scale = self.info.world_size / max(tokens, 1)
        loss_sum = torch.zeros((), device=self.info.device)
        for index, batch in enumerate(micro_batches):
            last = index == len(micro_batches) - 1
            loss = self.forward_sum(batch)
            loss_sum += loss.detach().float()
            self._backward(loss * scale, last)
        grad_norm = self._optimizer_step()
        loss_sum = all_reduce_sum(loss_sum, self.info)
        return float(loss_sum.item()) / max(tokens, 1), grad_norm, tokens

    def _backward(self, loss: torch.Tensor, last: bool) -> None:
        if self.ds_config is not None:
            self.engine.backward(loss * self.cfg.grad_accum)  # DeepSpeed divides by its accumulation steps
            self.engine.step()
            return
        sync = contextlib.nullcontext() if last or not self.info.distributed else self.engine.no_sync()
        with sync:
            loss.backward()

    def _optimizer_step(self) -> float:
        if self.ds_config is not None:
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        params = [p for p in self.model.parameters() if p.requires_grad]
        limit = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, limit)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def run(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        if info.is_main:
            self._write_start()
        losses: list[float] = []
        micro = iter(self.loader())
        bar = self._progress()
        call_start = time.perf_counter()
        start = call_start - self.elapsed0  # the log's elapsed_s runs on across a resume
        for step in range(self.start_step + 1, self.steps + 1):
            batches = [next(micro) for _ in range(cfg.grad_accum)]
            loss, grad_norm, tokens = self.train_step(batches)
            losses.append(loss)
            stopping = step < self.steps and (step == cfg.stop_at_step or self._out_of_time(call_start))
            if info.is_main:
                self._log(step, loss, grad_norm, tokens, time.perf_counter() - start, last=stopping)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self._lr():.2e}")
            if cfg.save_steps and step % cfg.save_steps == 0 and step < self.steps:
                self.save(self.out / f"checkpoint-{step}", step)
                if info.is_main:
                    prune_checkpoints(self.out, cfg.save_total_limit)
            if stopping:
                why = "--stop-at-step" if step == cfg.stop_at_step else f"time limit {cfg.time_limit_s:.0f} s reached"
                log.warning("%s: stopping after step %d of %d; saving", why, step, self.steps)
                break
        if bar is not None:
            bar.close()
        last = self.start_step + len(losses)
        self.save(self.out, last)
        if cfg.save_training_state and info.is_main:
            self._save_training_state(self.out, last, time.perf_counter() - start)
        if info.is_main:
            log.info("training done: step %d of %d, final loss %.4f; checkpoint in %s", last, self.steps, losses[-1], self.out)
        shutdown(info)
        return TrainResult(self.out, len(losses), losses, self.data_report)

    def _out_of_time(self, start: float) -> bool:
        """Whether the time limit has passed, as rank 0 sees it (every rank stops after the same step)."""
        if self.cfg.time_limit_s is None:
            return False
        late = torch.tensor(float(self.info.is_main and time.perf_counter() - start > self.cfg.time_limit_s), device=self.info.device)
        return bool(all_reduce_sum(late, self.info).item() > 0)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _progress(self):
        if not (self.info.is_main and self.cfg.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.steps, initial=self.start_step, desc="train", unit="step", dynamic_ncols=True)

    def _write_start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.cfg.save(self.out / "train_config.json")
        (self.out / "data_report.json").write_text(json.dumps(self.data_report, indent=2) + "\n")
        self._start_log()
        report = self.data_report
        log.info("data: %s; %d samples %s", report["summary"], report["samples"], report["samples_by_kind"])
        for reason in report["skipped"][:10]:
            log.warning("skipped: %s", reason)
        log.info(
            "model %s (%s); trainable parameters %s; %d steps of global batch %d on %d process(es)",
            self.cfg.model_name, self.kind.value, self.trainable, self.steps, self.global_batch, self.info.world_size,
        )  # fmt: skip

    def _start_log(self) -> None:
        """An empty log, or on a resume the resumed run's log up to its step (the curve stays one)."""
        rows = []
        if self.cfg.resume_from:
            source = Path(self.cfg.resume_from) / "train_log.jsonl"
            lines = source.read_text().splitlines() if source.is_file() else []
            rows = [line + "\n" for line in lines if line.strip() and json.loads(line)["step"] <= self.start_step]
        (self.out / "train_log.jsonl").write_text("".join(rows))

    def _log(self, step: int, loss: float, grad_norm: float, tokens: int, elapsed: float, last: bool = False) -> None:
        """A log row every ``logging_steps`` and at the run's last step (also one its time limit stops)."""
        if step % self.cfg.logging_steps and step != self.steps and not last:
            return
        record = {
            "step": step,
            "epoch": step * self.global_batch / len(self.dataset),
            "loss": loss,
            "lr": self._lr(),
            "grad_norm": grad_norm,
            "label_tokens": tokens,
            "samples": step * self.global_batch,
            "elapsed_s": round(elapsed, 3),
        }
        with open(self.out / "train_log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def save(self, out: Path, step: int) -> None:
        state_dict = None
        if zero_stage(self.ds_config) == 3:
            state_dict = self.engine._zero3_consolidated_16bit_state_dict()  # collective: every rank calls it
        if self.info.is_main:
            dtype = torch.bfloat16 if self.cfg.bf16 else None
            extra = {"train_config.json": self.cfg.to_json(), "trainer_state.json": {"step": step, "total_steps": self.steps}}
            model = self.engine if self.ds_config is not None else self.model
            save_checkpoint(model, self.processor, out, state_dict=state_dict, dtype=dtype, extra=extra)
        barrier(self.info)


def train(cfg: TrainConfig) -> TrainResult:
    return Trainer(cfg).run()
