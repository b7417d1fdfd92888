"""The engine on the four tiny architectures, through the real processor and generate()."""

import numpy as np
import pytest
from fixtures_models import ARCHS, tiny_backbone, tiny_checkpoint, tiny_image_tokens  # noqa: F401

from internvla_s2_node.core import geometry
from internvla_s2_node.core.config import EngineConfig
from internvla_s2_node.core.engine import S2Engine
from internvla_s2_node.core.generation import PlainGenerator
from internvla_s2_node.core.types import Decision, DecisionKind, Frame

IMAGE_PAD_ID = 151655


class Recording(PlainGenerator):
    """The plain generator, also recording how many image tokens each call sent."""

    def __init__(self, backbone, max_new_tokens):
        super().__init__(backbone, max_new_tokens)
        self.image_tokens = []

    def generate(self, messages, images, keys):
        text = self.backbone.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.backbone.processor(text=[text], images=list(images), return_tensors="pt")["input_ids"]
        self.image_tokens.append(int((ids == IMAGE_PAD_ID).sum()))
        return super().generate(messages, images, keys)


def rgb(i):
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)


@pytest.mark.parametrize("arch", ARCHS)
def test_nine_frame_step_on_every_backbone(arch, tiny_backbone):
    backbone = tiny_backbone(arch)
    engine = S2Engine(EngineConfig(model_path=str(backbone.path), fast_path="off", max_new_tokens=4), backbone=backbone)
    engine.generator = Recording(backbone, 4)
    engine.reset("Walk past the table and stop at the red sofa.")
    for i in range(8):
        engine.observe(rgb(i))
    k = geometry.intrinsics_from_hfov(128, 96, 79)
    frame = Frame(rgb(8), np.full((96, 128), 2.0, np.float32), k, np.eye(4), stamp=12.5)
    decision = engine.step(frame)
    assert isinstance(decision, Decision) and decision.kind in DecisionKind
    assert decision.stamp == 12.5 and isinstance(decision.raw_text, str)
    # 8 history frames + the current one, each at the model's 384x384 resolution
    assert engine.generator.image_tokens == [9 * tiny_image_tokens[arch]]
    assert decision.timing["step"] > 0
    assert engine.info["backbone"] == arch


def test_engine_loads_from_a_model_reference(tiny_checkpoint):
    tiny_checkpoint("qwen3_vl")  # built (or cached) by the fixture
    engine = S2Engine(EngineConfig(model_path="tiny:qwen3_vl", device="cpu", fast_path="off", max_new_tokens=2))
    engine.reset("go to the kitchen")
    d = engine.step(Frame(rgb(0)))
    assert d.kind in DecisionKind
    engine.close()
    assert engine.backbone is None
