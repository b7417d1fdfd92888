"""The S2 engine: history, prompt, generation, parsing and projection behind reset/observe/step."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import compile_cache, prompt, warmup
from .config import EngineConfig
from .generation import Generator, PlainGenerator
from .geometry import project_pixel_goal
from .history import HistoryBuffer
from .images import FrameResizer, as_rgb
from .parsing import OutputKind, ParsedOutput, parse_output
from .types import Decision, DecisionKind, Frame
from .warm_start import BackgroundBuild

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Conversation:
    """The turns of a step so far, kept while waiting for a look-down frame (command mode)."""

    messages: list[dict[str, Any]]
    images: list[Image.Image]
    keys: list[int | None]
    answer: str  # the model's last answer (it asked to look down)
    epoch: int
    look_downs: int = 1  # look-downs asked for in this step, this one included
    raw: str = ""  # every answer of the step, one a line


class S2Engine:
    # The background build starts after the first decision (or after this long without one): both at
    # once share one interpreter lock, and on the H200 the first plain step took 10.2 s next to the
    # compile instead of about a second (benchmarks/results/startup_nvidia-h200_2026-12-02.md).
    build_wait_s = 10.0
    # Devices on which creation runs one plain step (``_prime``): the first use of a GPU's kernels and
    # libraries (cuBLAS, cuDNN's conv3d of the patch embedding, sdpa) took the H200's first process 7.3 s
    # against 1.2-1.7 s later (startup run 7); it belongs to load, not to the first decision.
    prime_devices: tuple[str, ...] = ("cuda",)

    def __init__(self, cfg: EngineConfig, backbone=None) -> None:
        self.cfg = cfg
        if backbone is None:
            from .backbone import load_backbone
            from .model_ref import resolve_model_path

            backbone = load_backbone(resolve_model_path(cfg.model_path), cfg.device, cfg.dtype, cfg.attn_implementation)
        self.backbone = backbone
        self.fast_build: BackgroundBuild | None = None  # the fast path building while the plain one serves
        self._decided = threading.Event()  # set by the first step that generated (the build may start)
        self.compile_cache: dict[str, str] = {}
        # Before the generator: the background build's wait for the first decision starts with it.
        self.prime_s: float | None = self._prime()
        self.generator: Generator = self._make_generator()
        self.history: HistoryBuffer[Image.Image] = HistoryBuffer(cfg.history_capacity)
        self._resize = FrameResizer()  # resize_rgb's pixels, in bands on several cores (the frame's critical path)
        self._conjunctions = prompt.ConjunctionPicker(cfg.seed, cfg.conjunction_mode)
        self._state_lock = threading.Lock()
        self._step_lock = threading.Lock()
        self._instruction: str | None = None
        self._epoch = 0
        self._pending: _Conversation | None = None
        self._camera_size: tuple[int, int] | None = None  # (w, h) of the last stepped frame: a look-down's size

    def _prime(self) -> float | None:
        """One plain step (a prefill and one decode step) on the first warm-up request when the backbone is on
        one of ``prime_devices``; its seconds, or None. No episode state and no fast path sees it."""
        device = getattr(self.backbone, "device", None)
        if getattr(device, "type", None) not in self.prime_devices:
            return None
        start = time.perf_counter()
        PlainGenerator(self.backbone, 2).generate(*warmup.warmup_requests(self.cfg)[0])
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()
        seconds = time.perf_counter() - start
        log.info("primed the plain path on %s in %.2f s (first use of its kernels)", device, seconds)
        return seconds

    def _make_generator(self) -> Generator:
        if self.cfg.fast_path != "off":
            try:
                from .fast_generation import make_fast_generator
            except ImportError:
                make_fast_generator = None
            if make_fast_generator is not None:
                fast = make_fast_generator(self.backbone, self.cfg.max_new_tokens, required=self.cfg.fast_path == "on",
                                           prefix_reuse=self.cfg.prefix_reuse)
                if fast is not None:
                    return self._serve_fast(fast)
            elif self.cfg.fast_path == "on":
                raise RuntimeError("fast_path 'on' but no fast generator is available in this build")
        return PlainGenerator(self.backbone, self.cfg.max_new_tokens)

    def _serve_fast(self, fast) -> Generator:
        """``fast`` itself (``fast_path_build: inline``: it compiles in its first steps), or the plain path
        while ``fast`` is built on warm-up requests in a thread (``background``); the compile cache is set
        up for it either way."""
        mode = self.cfg.fast_path_build
        if mode == "auto":
            mode = "background" if fast.builds else "inline"
        root = compile_cache.cache_root(self.cfg.compile_cache_dir) if fast.builds else None
        self.compile_cache = compile_cache.configure(root)
        artifacts = compile_cache.artifact_path(root, compile_cache.artifact_key(self.backbone)) if root else None
        if mode == "inline":
            compile_cache.load_artifacts(artifacts)
            return fast

        def build(check):
            deadline = time.monotonic() + self.build_wait_s
            while not self._decided.wait(0.05) and time.monotonic() < deadline:
                check()
            check()
            compile_cache.load_artifacts(artifacts)
            requests = self.warmup_requests()
            log.info("fast path: %d warm-up requests, then every prefill bucket up to the longest", len(requests))
            fast.warm_up(requests, check)
            compile_cache.save_artifacts(artifacts)
            return fast

        self.fast_build = BackgroundBuild(build).start()
        log.info("fast path: building in the background; the plain path answers until it is ready")
        return PlainGenerator(self.backbone, self.cfg.max_new_tokens)

    def warmup_requests(self) -> list[tuple[list[dict[str, Any]], list[Image.Image], list[Any]]]:
        """What the fast path is built on (``core.warmup``): the episode's instruction and the camera frame's
        size (for the look-down turn) once the first step has shown them."""
        return warmup.warmup_requests(self.cfg, self._instruction, self._camera_size)

    def build_now(self) -> None:
        """Let the background build start without waiting for the first decision (nothing will step)."""
        self._decided.set()

    def _take_built(self) -> None:
        """Between steps: switch to the fast path once its background build is done."""
        build = self.fast_build
        if build is None or not build.done():
            return
        fast = build.take()
        if fast is not None:
            fast.reset()
            self.generator = fast
            log.info("fast path: ready %.1f s after it started building; it answers from this step on", build.seconds or 0.0)

    @property
    def path(self) -> str:
        """Which path answers the next step: 'fast' or 'plain'."""
        return getattr(self.generator, "path", None) or type(self.generator).__name__

    @property
    def serving(self) -> dict[str, Any]:
        """The path that answers now and the state of the fast path's build (for diagnostics)."""
        build = self.fast_build
        out: dict[str, Any] = {"generator": type(self.generator).__name__, "path": self.path, "prime_s": self.prime_s}
        if build is None:
            out["fast_path_build"] = "inline" if self.path == "fast" else "off"
        else:
            out["fast_path_build"] = build.state if not build.error or build.state == "cancelled" else f"failed: {build.error}"
            out["fast_path_build_s"] = build.seconds if build.done() else time.perf_counter() - (build.started or 0.0)
        return out

    @property
    def info(self) -> dict[str, str]:
        b = self.backbone
        return {
            "backbone": b.kind.value,
            "model_class": b.kind.model_class_name,
            "device": str(b.device),
            "dtype": str(b.dtype).replace("torch.", ""),
            "attn_implementation": b.attn_implementation,
            "model_path": str(b.path),
            "generator": type(self.generator).__name__,
        }

    @property
    def instruction(self) -> str | None:
        return self._instruction

    @property
    def pending_look_down(self) -> bool:
        return self._pending is not None

    @property
    def pending_look_downs(self) -> int:
        """Look-downs the awaited frame is tilted by (0: none awaited; 2 after a second ↓)."""
        pending = self._pending
        return 0 if pending is None else pending.look_downs

    def reset(self, instruction: str) -> None:
        """Start a new episode; raises ValueError for an empty or over-long instruction."""
        if not isinstance(instruction, str) or not prompt.clean_instruction(instruction):
            raise ValueError("instruction is empty")
        if len(instruction) > self.cfg.max_instruction_chars:
            raise ValueError(f"instruction has {len(instruction)} characters, limit is {self.cfg.max_instruction_chars}")
        with self._state_lock:
            self._instruction = instruction
            self._epoch += 1
            self._pending = None
            self.history.clear()
            self._conjunctions.reset()
            self.generator.reset()

    def observe(self, rgb) -> int:
        """Record a frame in the episode history; returns its index. Thread-safe."""
        image = self._resize(as_rgb(rgb), self.cfg.resize_w, self.cfg.resize_h)
        return self.history.append(image)

    def step(self, frame: Frame, index: int | None = None) -> Decision:
        """Decide on ``frame``. Bad frames raise ``images.InvalidFrame``; model trouble gives kind NONE."""
        with self._step_lock:
            start = time.perf_counter()
            self._take_built()
            path = self.path
            rgb = as_rgb(frame.rgb)
            self._camera_size = (rgb.shape[1], rgb.shape[0])
            with self._state_lock:
                instruction, epoch, pending = self._instruction, self._epoch, self._pending
                self._pending = None
            if instruction is None:
                decision = Decision(DecisionKind.NONE, reason="no instruction yet")
            elif pending is not None:
                decision = self._look_down_turn(pending, frame, rgb)
            else:
                decision = self._first_turn(instruction, epoch, frame, rgb, index)
            if instruction is not None:
                self._decided.set()
            if self._epoch != epoch:
                decision = Decision(DecisionKind.NONE, raw_text=decision.raw_text, reason="episode was reset during the step")
            decision.stamp = frame.stamp
            decision.path = path
            decision.timing["step"] = time.perf_counter() - start
            return decision

    def _first_turn(self, instruction: str, epoch: int, frame: Frame, rgb: np.ndarray, index: int | None) -> Decision:
        # ``index`` is this frame's index from observe(): its resized copy is in the history already.
        current = self.history.get(index) if index is not None else None
        if current is None:
            current = self._resize(rgb, self.cfg.resize_w, self.cfg.resize_h)
        if index is None:
            index = self.history.append(current)
        history = self.history.select(index, self.cfg.num_history)
        text = prompt.build_user_text(instruction, len(history), self._conjunctions.pick(), self.cfg.prompt_punctuation)
        images = [img for _, img in history] + [current]
        keys: list[int | None] = [i for i, _ in history] + [index]
        messages = [prompt.user_message(text, images)]
        generated = self.generator.generate(messages, images, keys)
        parsed = parse_output(generated.text, current.size, self.cfg.max_actions, self.cfg.look_down_in_list)
        if parsed.kind != OutputKind.LOOK_DOWN:
            return self._decide(parsed, generated, frame, current.size, looked_down=False)
        conversation = _Conversation(messages, images, keys, generated.text, epoch, raw=generated.text)
        if self.cfg.look_down_mode == "command":
            return self._await_look_down(conversation, parsed, generated.timing, looked_down=False)
        return self._look_down_turn(conversation, frame, rgb, first_timing=generated.timing)

    def _await_look_down(self, conv: _Conversation, parsed: ParsedOutput, timing: dict, looked_down: bool) -> Decision:
        """Command mode: keep the conversation and ask the caller for a (further) tilted frame."""
        with self._state_lock:
            if self._epoch == conv.epoch:
                self._pending = conv
        return Decision(DecisionKind.LOOK_DOWN, actions=parsed.actions, raw_text=conv.raw, timing=dict(timing),
                        looked_down=looked_down)

    def _look_down_turn(self, conv: _Conversation, frame: Frame, rgb: np.ndarray, first_timing: dict | None = None) -> Decision:
        """Next user turn: the look-down frame at full resolution, as upstream appends it
        (habitat_vln_evaluator.py:731-739; internvla_n1_agent_realworld.py:192-199)."""
        look_down = Image.fromarray(rgb)
        messages = conv.messages + [
            prompt.assistant_message(conv.answer),
            prompt.user_message(prompt.build_look_down_text(self._conjunctions.pick()), [look_down]),
        ]
        images, keys = conv.images + [look_down], conv.keys + [None]
        generated = self.generator.generate(messages, images, keys)
        if first_timing:
            generated.timing = {k: v + first_timing.get(k, 0.0) for k, v in generated.timing.items()}
        parsed = parse_output(generated.text, look_down.size, self.cfg.max_actions, self.cfg.look_down_in_list)
        raw = conv.raw + "\n" + generated.text
        if parsed.kind == OutputKind.LOOK_DOWN:
            # Upstream's evaluator tilts another 30 deg and asks a third turn (:826-828, 877-880, 731-739);
            # its real-world client drives nothing for [5] (http_internvla_client.py:187).
            if self.cfg.look_down_mode == "command" and conv.look_downs < self.cfg.max_look_downs:
                again = _Conversation(messages, images, keys, generated.text, conv.epoch, conv.look_downs + 1, raw)
                return self._await_look_down(again, parsed, generated.timing, looked_down=True)
            return Decision(DecisionKind.NONE, raw_text=raw, looked_down=True,
                            reason=f"model asked to look down again after {conv.look_downs} look-down(s) "
                                   f"(max_look_downs {self.cfg.max_look_downs}, look_down_mode {self.cfg.look_down_mode})")
        decision = self._decide(parsed, generated, frame, look_down.size, looked_down=True)
        decision.raw_text = raw
        return decision

    def _decide(self, parsed: ParsedOutput, generated, frame: Frame, image_size, looked_down: bool) -> Decision:
        timing = dict(generated.timing)
        common = dict(raw_text=generated.text, timing=timing, looked_down=looked_down)
        if parsed.kind == OutputKind.NONE:
            return Decision(DecisionKind.NONE, reason=parsed.reason, **common)
        if parsed.kind == OutputKind.STOP:
            return Decision(DecisionKind.STOP, actions=parsed.actions, **common)
        if parsed.kind == OutputKind.ACTIONS:
            return Decision(DecisionKind.ACTIONS, actions=parsed.actions, **common)
        result = project_pixel_goal(
            parsed.pixel,
            image_size,
            frame.depth,
            frame.intrinsics,
            frame.t_odom_optical,
            self.cfg.min_depth,
            self.cfg.max_depth,
            self.cfg.depth_window,
        )
        if result.waypoint is None:
            return Decision(DecisionKind.PIXEL_GOAL, pixel=parsed.pixel, reason=result.reason, **common)
        return Decision(DecisionKind.WAYPOINT, pixel=parsed.pixel, waypoint=result.waypoint, **common)

    def close(self) -> None:
        """Free the model (and the CUDA cache). The engine is unusable afterwards. A fast-path build in
        progress stops at its next warm-up request and drops its result."""
        if self.fast_build is not None:
            self.fast_build.cancel()
        self._resize.close()
        self.generator = None  # type: ignore[assignment]
        self.backbone = None
        from .backbone import free_accelerator_memory

        free_accelerator_memory()
