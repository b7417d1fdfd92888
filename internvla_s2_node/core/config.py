"""Typed, validated engine configuration. Defaults for the ROS node live in config/robot.yaml."""

from __future__ import annotations

import dataclasses
import re

DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTN_IMPLEMENTATIONS = ("auto", "flash_attention_2", "sdpa", "eager")
LOOK_DOWN_MODES = ("requery", "command")
CONJUNCTION_MODES = ("random", "first")
FAST_PATH_MODES = ("auto", "on", "off")
FAST_PATH_BUILDS = ("auto", "background", "inline")  # auto: background where the fast path compiles (CUDA)
PROMPT_PUNCTUATIONS = ("one_period", "habitat_evaluator")  # core.prompt.PUNCTUATION_MODES
LOOK_DOWN_IN_LIST = ("skip", "execute")  # core.parsing.LOOK_DOWN_IN_LIST


@dataclasses.dataclass
class EngineConfig:
    model_path: str
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "auto"
    num_history: int = 8
    history_capacity: int = 512
    resize_w: int = 384
    resize_h: int = 384
    max_new_tokens: int = 24
    look_down_mode: str = "requery"
    conjunction_mode: str = "random"
    prompt_punctuation: str = "one_period"  # see core.prompt.instruction_text
    seed: int = 0
    min_depth: float = 0.1
    max_depth: float = 10.0
    depth_window: int = 5
    max_actions: int = 128  # upstream executes every action of an answer of up to 128 new tokens
    look_down_in_list: str = "skip"  # see core.parsing.parse_output
    max_look_downs: int = 2  # look-down turns in a row (command mode): 2 x 30 deg, as upstream after a second ↓
    max_instruction_chars: int = 2000
    fast_path: str = "auto"
    fast_path_build: str = "auto"  # background: the plain path answers while the fast path compiles
    prefix_reuse: bool = True  # fast path: keep the K/V of the prompt's unchanged prefix (core.fast_generation)
    compile_cache_dir: str = ""  # '' = <INTERNVLA_S2_CACHE or ~/.cache/internvla_s2>/compile; 'off' = torch's default

    @classmethod
    def from_params(cls, params: dict, **overrides) -> EngineConfig:
        """From node parameter values (the s2_node's, flat): the keys that are fields, then ``overrides``."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in fields} | overrides)

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid engine config: " + "; ".join(problems))

    def _problems(self):
        if not isinstance(self.model_path, str) or not self.model_path.strip():
            yield "model_path must be a non-empty path"
        if not DEVICE_RE.match(str(self.device)):
            yield f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
        for name, allowed in (
            ("dtype", DTYPES),
            ("attn_implementation", ATTN_IMPLEMENTATIONS),
            ("look_down_mode", LOOK_DOWN_MODES),
            ("conjunction_mode", CONJUNCTION_MODES),
            ("prompt_punctuation", PROMPT_PUNCTUATIONS),
            ("look_down_in_list", LOOK_DOWN_IN_LIST),
            ("fast_path", FAST_PATH_MODES),
            ("fast_path_build", FAST_PATH_BUILDS),
        ):
            if getattr(self, name) not in allowed:
                yield f"{name} must be one of {allowed}, got {getattr(self, name)!r}"
        for name, low in (
            ("num_history", 0),
            ("history_capacity", 2),
            ("resize_w", 28),
            ("resize_h", 28),
            ("max_new_tokens", 1),
            ("depth_window", 0),
            ("max_actions", 1),
            ("max_look_downs", 1),
            ("max_instruction_chars", 1),
        ):
            if int(getattr(self, name)) < low:
                yield f"{name} must be >= {low}, got {getattr(self, name)}"
        if self.history_capacity < self.num_history:
            yield f"history_capacity ({self.history_capacity}) must be >= num_history ({self.num_history})"
        if self.look_down_in_list == "execute" and self.look_down_mode != "command":
            yield "look_down_in_list 'execute' needs look_down_mode 'command' (the caller tilts and runs the list)"
        if not 0.0 <= self.min_depth < self.max_depth:
            yield f"need 0 <= min_depth < max_depth, got {self.min_depth} and {self.max_depth}"
