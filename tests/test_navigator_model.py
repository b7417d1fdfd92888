"""The shipped navigator model and its held-out split (issue 13).

The model is a trained checkpoint like any other: it loads through ``load_backbone`` and the
engine with no special case, has the real Qwen vocabulary and chat template, and answers
with S2 outputs on a rendered held-out frame. The held-out houses are never training houses.
"""

import json
import pathlib

import numpy as np
import pytest

from internvla_s2_node.core import tiny
from internvla_s2_node.core.config import EngineConfig
from internvla_s2_node.core.engine import S2Engine
from internvla_s2_node.core.types import DecisionKind, Frame
from internvla_s2_node.sim.backend import SimConfig
from internvla_s2_node.sim.episode_gen import TRAIN_FIRST_SEED, VAL_FIRST_SEED, build_split, house_rooms
from internvla_s2_node.sim.episodes import load_episodes
from internvla_s2_node.sim.mujoco_backend import ASSETS_DIR, BUNDLED_SCENES_DIR, MujocoBackend
from internvla_s2_node.sim.scenes import SceneSpec, generate_scene
from internvla_s2_node.train.small_model import SmallSize, make_config

REPO = pathlib.Path(__file__).resolve().parents[1]
MODEL = REPO / "internvla_s2_node" / "assets" / "navigator"
VAL = ASSETS_DIR / "episodes" / "mujoco_val_unseen.json.gz"


def test_held_out_split_is_shipped_and_disjoint_from_training_houses():
    episodes = load_episodes(VAL)
    assert len(episodes) >= 100
    seeds = {int(pathlib.Path(e.scene_id).stem.split("_")[1]) for e in episodes}
    assert len(seeds) >= 20 and min(seeds) >= VAL_FIRST_SEED
    assert TRAIN_FIRST_SEED + 10_000 <= VAL_FIRST_SEED  # room for far more training houses than are used
    for e in episodes:
        assert (BUNDLED_SCENES_DIR / e.scene_id).is_file(), e.scene_id


def test_held_out_houses_are_their_seeds(tmp_path):
    # Procedural from the seed: regenerating one held-out house gives the shipped scene exactly.
    seed = VAL_FIRST_SEED + 3
    shipped = SceneSpec.load(BUNDLED_SCENES_DIR / "val_unseen" / f"house_{seed}.json")
    again = generate_scene(seed, n_rooms=house_rooms(seed), name=f"house_{seed}")
    assert json.dumps(shipped.to_json(), sort_keys=True) == json.dumps(again.to_json(), sort_keys=True)
    episodes = build_split(tmp_path, "x", [seed], 6, "val_unseen/")
    shipped_eps = [e for e in load_episodes(VAL) if e.scene_id == f"val_unseen/house_{seed}.json"]
    assert [e.instruction for e in episodes] == [e.instruction for e in shipped_eps]


def test_small_config_keeps_qwen_tokens_and_patching():
    config = make_config(SmallSize())
    reference = tiny.make_tiny_config("qwen3_vl")
    assert config.text_config.vocab_size == 151936 and config.tie_word_embeddings
    assert config.image_token_id == reference.image_token_id and config.vision_config.patch_size == 16
    assert sum(config.text_config.rope_parameters["mrope_section"]) == config.text_config.head_dim // 2
    with pytest.raises(ValueError, match="heads"):
        SmallSize(hidden=130)


def test_shipped_checkpoint_is_small_real_and_loads_like_any_checkpoint():
    weights = sorted(MODEL.glob("*.safetensors"))
    assert weights and sum(p.stat().st_size for p in weights) <= 60 * 2**20
    config = json.loads((MODEL / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl" and config["text_config"]["vocab_size"] == 151936
    assert (MODEL / "chat_template.jinja").read_text() == tiny.QWEN3_VL_CHAT_TEMPLATE
    # The weights are those of the last round's last step; a round its time limit (or --stop-at-step) cut
    # says so in train_rounds.json, so the files describe the weights shipped.
    state = json.loads((MODEL / "trainer_state.json").read_text())
    last = json.loads((MODEL / "train_rounds.json").read_text())["rounds"][-1]
    assert 0 < state["step"] <= state["total_steps"]
    assert (state["step"], state["total_steps"]) == (last["steps"], last["schedule_steps"])


@pytest.fixture(scope="module")
def held_out_frames():
    """The start frame of a held-out episode, level and looking down, as the simulator renders it."""
    episode = load_episodes(VAL)[0]
    backend = MujocoBackend(SimConfig())
    try:
        level = backend.reset(episode)
        down = backend.place(episode.start_world, episode.start_yaw, 30.0)
    finally:
        backend.close()
    return episode, level, down


def test_model_answers_with_s2_outputs_on_a_held_out_house(held_out_frames):
    episode, level, down = held_out_frames
    engine = S2Engine(EngineConfig(model_path=str(MODEL), device="cpu", resize_w=160, resize_h=160, look_down_mode="command"))
    engine.reset(episode.instruction)
    index = engine.observe(level.rgb)
    decision = engine.step(Frame(level.rgb), index)
    assert decision.kind in (DecisionKind.ACTIONS, DecisionKind.LOOK_DOWN, DecisionKind.STOP), decision
    text = decision.raw_text.strip()
    assert text and set(text) <= set("←→↑↓STOP"), text  # arrows or STOP, as the released model answers
    if decision.kind == DecisionKind.LOOK_DOWN:
        frame = Frame(down.rgb, down.depth, down.intrinsics, down.t_world_optical)
        answer = engine.step(frame)
        column, row = (int(v) for v in answer.raw_text.split())  # a pixel goal on the look-down frame
        assert 0 <= column < 640 and 0 <= row < 480
    assert np.isfinite(decision.timing["step"])


def test_shipped_tokenizer_is_the_qwen_tokenizer():
    # vocab.json + merges.txt + added tokens: the same ids as the tiny checkpoints' converted Qwen tokenizer.
    from transformers import AutoTokenizer

    shipped = AutoTokenizer.from_pretrained(MODEL)
    reference = AutoTokenizer.from_pretrained(tiny.default_tiny_checkpoint("qwen3_vl"))
    text = "<|im_start|>user\nWalk past the red sofa, then stop.<|vision_start|><|image_pad|><|vision_end|>←→↑↓ STOP 320 391<think>"
    assert shipped(text)["input_ids"] == reference(text)["input_ids"]
    assert len(shipped) == len(reference) and shipped.eos_token == "<|im_end|>" and shipped.pad_token == "<|endoftext|>"


def test_shipped_tokenizer_carries_the_tiny_checkpoints_bpe(tmp_path):
    """The device runs build core.tiny's BPE cache from the navigator's tokenizer when qwen-tokenizer is
    absent (benchmarks/step_variants.py --bpe-from DIR): its base vocabulary and merges are the same."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(MODEL).save_pretrained(tmp_path)
    model = json.loads((tmp_path / "tokenizer.json").read_text())["model"]
    vocab, merges = tiny._bpe_vocab_and_merges()
    assert {t: i for t, i in model["vocab"].items() if i < tiny.FIRST_SPECIAL_ID} == vocab
    assert [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]] == merges
