"""The fast generation path gives the plain path's tokens, and really skips repeated work.

Each test loads its own tiny checkpoint copy and re-draws its weights larger (std 0.2), so that the
greedy answer depends on the frames and the prompt (the checkpoint's own 0.02-std weights answer the
same token for everything, which would make "same tokens" prove nothing).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from fixtures_models import tiny_checkpoint  # noqa: F401  (pytest fixture)
from PIL import Image

from internvla_s2_node.core import prompt
from internvla_s2_node.core.backbone import load_backbone
from internvla_s2_node.core.fast_generation import FastGenerator, FastPathUnavailable, make_fast_generator
from internvla_s2_node.core.generation import PlainGenerator
from internvla_s2_node.core.history import history_indices

INSTRUCTION = "walk past the sofa, turn left at the lamp and stop in front of the kitchen table"
NEW_TOKENS = 6


def _spread_weights(model, seed: int = 0, std: float = 0.2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture(scope="module")
def backbone(tiny_checkpoint):  # noqa: F811
    """Factory: a private tiny backbone per (arch, attention), weights spread; cached for the module."""
    loaded = {}

    def get(arch: str = "qwen3_vl", attn: str = "sdpa"):
        if (arch, attn) not in loaded:
            b = load_backbone(tiny_checkpoint(arch), device="cpu", dtype="float32", attn_implementation=attn)
            _spread_weights(b.model)
            loaded[(arch, attn)] = b
        return loaded[(arch, attn)]

    return get


def _frames(n: int, seed: int = 0, size=(384, 384)) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def _episode(steps: int, seed: int = 0, look_down_every: int = 3, instruction: str = INSTRUCTION):
    """(messages, images, keys) per call as the engine makes them: linspace history + current frame,
    and every few steps a look-down second turn (a full-resolution frame with key None)."""
    frames = _frames(steps, seed)
    looks = _frames(steps, seed + 100, size=(320, 240))
    picker = prompt.ConjunctionPicker(seed, "random")
    calls = []
    for t in range(steps):
        hist = history_indices(t, 8)
        images = [frames[i] for i in hist] + [frames[t]]
        keys = hist + [t]
        messages = [prompt.user_message(prompt.build_user_text(instruction, len(hist), picker.pick()), images)]
        calls.append((messages, images, keys))
        if look_down_every and t % look_down_every == look_down_every - 1:
            second = messages + [
                prompt.assistant_message("↓"),
                prompt.user_message(prompt.build_look_down_text(picker.pick()), [looks[t]]),
            ]
            calls.append((second, images + [looks[t]], keys + [None]))
    return calls


class _CountingTower:
    """Counts the frames the vision tower encodes, for the fast path (while it encodes) and for the
    plain path (the rest), by wrapping the tower's forward on the instance."""

    def __init__(self, fast: FastGenerator) -> None:
        self.fast, self.visual = fast, fast.visual
        self.inner = self.visual.forward
        self.calls = self.frames = self.plain_frames = 0
        self.visual.forward = self

    def __call__(self, pixels, grid_thw=None, *args, **kwargs):
        if self.fast.encoding:
            self.calls += 1
            self.frames += int(grid_thw.shape[0])
        else:
            self.plain_frames += int(grid_thw.shape[0])
        return self.inner(pixels, grid_thw, *args, **kwargs)

    def remove(self) -> None:
        del self.visual.forward


def _compare(plain, fast, calls):
    answers = []
    for messages, images, keys in calls:
        a = plain.generate(messages, images, keys)
        b = fast.generate(messages, images, keys)
        assert b.token_ids == a.token_ids, f"call {len(answers)}: fast {b.token_ids} != plain {a.token_ids}"
        assert b.text == a.text
        answers.append(tuple(a.token_ids))
    # The comparison means something only if the answers depend on the input.
    assert len(set(answers)) >= 3, f"degenerate answers: {set(answers)}"
    return answers


@pytest.mark.parametrize(
    "arch,attn",
    [("qwen3_vl", "sdpa"), ("qwen2_5_vl", "sdpa"), ("qwen3_vl_moe", "sdpa"), ("qwen3_vl", "eager"), ("qwen2_5_vl", "eager")],
)
def test_same_tokens_as_plain_over_an_episode(backbone, arch, attn):
    b = backbone(arch, attn)
    plain, fast = PlainGenerator(b, NEW_TOKENS), make_fast_generator(b, NEW_TOKENS, required=True)
    assert isinstance(fast, FastGenerator)
    assert fast.vision_grouped is (attn == "sdpa")  # sdpa: vision attention grouped by window/image length (issue 14)
    _compare(plain, fast, _episode(12))


@pytest.mark.parametrize("tower", [True, False], ids=["tower_graph", "block_graphs"])
@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl", "qwen3_vl_moe"])
def test_graph_plumbing_with_stand_in_graphs(backbone, arch, tower):
    """The CUDA-graph code paths (static buffers filled before a replay, outputs read after it; prefill
    per bucket, decode, the whole vision tower per frame shape or every vision block) on CPU, with a
    stand-in that replays by re-running."""
    b = backbone(arch)
    plain = PlainGenerator(b, NEW_TOKENS)
    fast = FastGenerator(b, NEW_TOKENS, cuda_graphs="fake", vision_graphs=True, fuse_qkv=True, device_preprocess=True, vision_tower_graph=tower)
    assert fast.vision_grouped  # graphs captured around the grouped attention
    layers = b.model.model.language_model.layers
    assert sum(f.names == ("q_proj", "k_proj", "v_proj") for f in fast._fused) == len(layers)
    _compare(plain, fast, _episode(12, seed=21))
    # The modules are back after decoding, their weights are views into the fused ones (no copy).
    assert all(f.parent._modules[n] is m for f in fast._fused for n, m in zip(f.names, f.originals))
    assert all(f.originals[0].weight.data_ptr() == f.weight.data_ptr() for f in fast._fused)
    assert fast.failures == {}
    assert fast.stats["device_preprocess_sizes"] == 2  # 384x384 and the look-down size, each checked once
    assert fast.stats["prefill_graphs_captured"] >= 2 and fast.stats["decode_graphs_captured"] >= 1
    if tower:  # one tower graph per frame shape (384x384 and look-down), no block graphs
        assert fast.stats["vision_tower_graphs_captured"] == 2 and fast.stats["vision_graphs_captured"] == 0
    else:
        assert fast.stats["vision_graphs_captured"] == 2 * len(b.model.model.visual.blocks)


@pytest.mark.parametrize(
    "options",
    [dict(compile_decode=True, fuse_qkv=True), dict(compile_decode=True, fuse_qkv=True, compile_scope="model"),
     dict(vision_graphs=True, compile_vision=True), dict(vision_graphs=True, compile_vision=True, vision_tower_graph=True),
     dict(compile_decode=True, fuse_qkv=True, decode_compile_options={"coordinate_descent_tuning": True})],
    ids=["decode_step", "decode_step_whole", "vision_blocks", "vision_tower", "decode_step_own_options"],
)
def test_compiled_parts(backbone, options):
    """The decode step (one decoder layer compiled for all layers, or the whole step), or each vision
    block before its (stand-in) graph, through torch.compile as on CUDA, here with the CPU backend."""
    from torch._dynamo.utils import counters

    b = backbone("qwen3_vl")
    plain = PlainGenerator(b, NEW_TOKENS)
    torch._dynamo.reset()
    counters.clear()
    fast = FastGenerator(b, NEW_TOKENS, cuda_graphs="fake", **options)
    _compare(plain, fast, _episode(4, seed=23))
    assert fast.failures == {}
    if options.get("compile_decode"):  # one graph, also per layer: the second layer reuses the first's compile
        assert len(b.model.model.language_model.layers) > 1 and counters["stats"]["unique_graphs"] == 1
    if options.get("decode_compile_options"):  # its own compile, not the default-options one dynamo cached
        from internvla_s2_node.core.fast_generation import generator

        default = FastGenerator(b, NEW_TOKENS, cuda_graphs="fake", compile_decode=True, fuse_qkv=True)
        default.generate(*_episode(1, seed=23)[0])
        assert counters["stats"]["unique_graphs"] == 2
        assert fast._decode_fn.keywords["layer_fn"]._torchdynamo_orig_callable is generator._decode_layer_tuned
    if options.get("compile_vision"):  # per frame shape (384x384, look-down): the tower's graph or its blocks'
        assert counters["stats"]["unique_graphs"] >= 1  # the blocks went through dynamo
        if fast.vision_tower_graph:
            assert fast.stats["vision_tower_graphs_captured"] in (1, 2) and fast.stats["vision_graphs_captured"] == 0
        else:
            n_blocks = len(b.model.model.visual.blocks)
            assert fast.stats["vision_graphs_captured"] in (n_blocks, 2 * n_blocks)


@pytest.mark.parametrize(
    "arch,attn,options",
    [("qwen3_vl", "sdpa", {}), ("qwen2_5_vl", "sdpa", {}), ("qwen3_vl", "eager", {}),
     ("qwen2_5_vl", "sdpa", dict(cuda_graphs="fake", fuse_qkv=True, vision_graphs=True)),
     ("qwen2_5_vl", "sdpa", dict(cuda_graphs="fake", fuse_qkv=True, compile_prefill=True, compile_decode=True))],
    ids=["qwen3_vl-sdpa", "qwen2_5_vl-sdpa", "qwen3_vl-eager", "qwen2_5_vl-graphs", "qwen2_5_vl-compiled"],
)
def test_prefix_reuse_gives_the_same_tokens(backbone, arch, attn, options):
    """Issue 14 item 4: the K/V of the prompt's prefix that equals the last prompt's (the text before the
    first frame, frame 0, and every history frame up to the first that changed; the whole first turn
    in a look-down turn) are kept and only the rest is prefilled; the tokens stay the plain path's
    over an episode whose linspace history changes, and the reuse is counted per call."""
    b = backbone(arch, attn)
    plain = PlainGenerator(b, NEW_TOKENS)
    fast = FastGenerator(b, NEW_TOKENS, prefix_reuse=True, **options)
    calls = _episode(12, seed=41)
    hits, grew = [], []
    for i, (messages, images, keys) in enumerate(calls):
        capacity = fast._capacity
        a, f = plain.generate(messages, images, keys), fast.generate(messages, images, keys)
        assert f.token_ids == a.token_ids, f"call {i}: fast {f.token_ids} != plain {a.token_ids} (prefix {fast.last_prefix})"
        hits.append(fast.last_prefix)
        grew.append(fast._capacity != capacity)  # a new, larger cache keeps nothing
    reused = [start for start, _ in hits]
    assert reused[0] == 0 and all(start % 64 == 0 and start < length for start, length in hits)
    assert all(start == 0 for (start, _), g in zip(hits, grew) if g) and sum(grew) <= 3  # the first call allocates
    assert sum(r > 0 for r in reused) >= len(calls) // 2  # most calls reuse something
    look_down = [h for h, g, (_, _, keys) in zip(hits, grew, calls) if keys[-1] is None and not g]
    assert look_down and all(start >= length // 2 for start, length in look_down)  # the first turn is kept
    assert fast.stats["prefix_tokens_reused"] == sum(reused) and fast.stats["prompt_tokens"] == sum(n for _, n in hits)
    assert fast.failures == {}


OTHER_INSTRUCTIONS = (
    "go to the kitchen",
    "turn around, walk down the hallway past the two bedrooms and the bathroom, and stop at the top of the stairs",
    "leave the bedroom, go left along the corridor, walk past the bathroom and the laundry room, go down the "
    "stairs, cross the living room past the grey sofa and the television, and stop in front of the fridge",
)


@pytest.mark.parametrize("reuse", [True, False], ids=["prefix_reuse", "no_reuse"])
@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_prefix_reuse_warm_up_covers_any_instruction(backbone, arch, reuse):
    """Issue 14: with prefix reuse the prefill graphs after a kept prefix are keyed by the prefilled bucket
    alone (the kept length is device data), and the engine's warm-up (built with the episode's instruction)
    captures every bucket. Episodes with that and other instructions (shorter and longer), their linspace history
    changing, random conjunctions and look-down turns at the camera's size then capture no prefill graph,
    not even in their first call, nor in the first fast call after the switch from the plain path (the whole
    history, nothing kept), and the tokens stay the plain path's. Without prefix reuse likewise (every bucket
    from position 0)."""
    b = backbone(arch)
    _warm_up_covers_other_instructions(b, FastGenerator(b, NEW_TOKENS, cuda_graphs="fake", prefix_reuse=reuse))


def _warm_up_covers_other_instructions(b, fast: FastGenerator) -> None:
    from internvla_s2_node.core.config import EngineConfig
    from internvla_s2_node.core.engine import S2Engine
    from internvla_s2_node.core.types import Frame

    engine = S2Engine(EngineConfig(model_path=str(b.path), fast_path="off", prefix_reuse=fast.prefix_reuse, max_new_tokens=NEW_TOKENS),
                      backbone=b)
    engine.reset(INSTRUCTION)
    engine.step(Frame(np.zeros((240, 320, 3), dtype=np.uint8)))  # a camera of _episode's look-down size
    plain = PlainGenerator(b, NEW_TOKENS)
    fast.warm_up(engine.warmup_requests())
    after_warm_up, capacity = fast.stats["prefill_graphs_captured"], fast._capacity
    lengths, reused, answers = set(), [], set()
    instructions = (INSTRUCTION,) + OTHER_INSTRUCTIONS  # the warm-up's, then others
    for n, instruction in enumerate(instructions):
        calls = _episode(9, seed=43 + n, instruction=instruction)
        # The first fast call after the switch from the plain path: the whole history, nothing kept.
        fast.reset()
        switch = [c for c in calls if c[2][-1] is not None][-1]
        assert fast.generate(*switch).token_ids == plain.generate(*switch).token_ids and fast.last_prefix[0] == 0
        assert fast.stats["prefill_graphs_captured"] == after_warm_up, f"episode {n}: the switch call captured a prefill graph"
        fast.reset()
        for i, (messages, images, keys) in enumerate(calls):
            a, f = plain.generate(messages, images, keys), fast.generate(messages, images, keys)
            assert f.token_ids == a.token_ids, f"episode {n} call {i}: fast {f.token_ids} != plain {a.token_ids} (prefix {fast.last_prefix})"
            assert fast.stats["prefill_graphs_captured"] == after_warm_up, f"episode {n} call {i} (prefix {fast.last_prefix}) captured a prefill graph"
            reused.append(fast.last_prefix[0])
            answers.add(tuple(a.token_ids))
            if i == 0:
                lengths.add(fast.last_prefix[1])
    assert len(lengths) == len(instructions) and fast._capacity == capacity
    assert len(answers) >= 3
    if fast.prefix_reuse:
        assert sum(r > 0 for r in reused) >= len(reused) - 2 * len(instructions)
    assert fast.failures == {}


def test_vision_tower_sees_each_frame_once(backbone):
    b = backbone("qwen3_vl")
    plain, fast = PlainGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS)
    tower = _CountingTower(fast)
    try:
        steps = 12
        calls = _episode(steps, seed=3, look_down_every=3)
        _compare(plain, fast, calls)
        look_downs = sum(1 for _, _, keys in calls if keys[-1] is None)
        # Every episode frame once (as the current frame); every look-down frame once; nothing else.
        assert tower.frames == steps + look_downs
        assert tower.calls == len(calls)  # one tower call per generate (the new frame), none for history
        assert fast.stats["frames_encoded"] == steps + look_downs
        images_sent = sum(len(images) for _, images, _ in calls)
        assert fast.stats["frame_hits"] == images_sent - steps - look_downs
        # The plain path goes through the same wrapped tower untouched: it encodes every image of every call.
        assert tower.plain_frames == images_sent
    finally:
        tower.remove()


def test_reset_clears_the_cache_and_cache_is_bounded(backbone):
    b = backbone("qwen3_vl")
    plain, fast = PlainGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS, cache_frames=16)
    calls = _episode(30, seed=5, look_down_every=0)
    _compare(plain, fast, calls)
    assert len(fast._frames) <= 16 and fast.stats["frames_evicted"] > 0
    assert all(e.pixels is None for e in fast._frames.values())  # pixels dropped once encoded
    fast.reset()
    assert len(fast._frames) == 0
    encoded = fast.stats["frames_encoded"]
    messages, images, keys = calls[10]
    assert fast.generate(messages, images, keys).token_ids == plain.generate(messages, images, keys).token_ids
    assert fast.stats["frames_encoded"] == encoded + len(images)


def test_token_ids_and_pixels_match_the_processor(backbone):
    for arch in ("qwen3_vl", "qwen2_5_vl"):
        b = backbone(arch)
        fast = FastGenerator(b, NEW_TOKENS)
        messages, images, keys = _episode(10, seed=7)[-1]
        text = b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ref = b.processor(text=[text], images=list(images), return_tensors="pt")
        entries = [fast._entry({}, k, im) for k, im in zip(keys, images)]
        assert fast._token_ids(text, entries) == ref["input_ids"][0].tolist()
        assert torch.equal(torch.cat([e.pixels for e in entries]), ref["pixel_values"].to(torch.float32))
        assert [list(e.grid) for e in entries] == ref["image_grid_thw"].tolist()


def test_memoized_chat_text_and_ids_equal_the_processors_over_an_episode(backbone):
    """The chat-text and token-id memos (host time per step) give the processor's text and ids for every
    call of an episode whose history, conjunction and turns change, and they are hit."""
    b = backbone("qwen3_vl")
    fast = FastGenerator(b, NEW_TOKENS)
    calls = _episode(14, seed=3)
    for messages, images, keys in calls + calls[-6:]:  # the repeated tail: same texts, other frame objects
        messages = [dict(m, content=[dict(i, image=i["image"].copy()) if "image" in i else i for i in m["content"]])
                    for m in messages]  # fmt: skip
        text = b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert fast._chat_text(messages) == text
        entries = [fast._entry({}, k, im) for k, im in zip(keys, images)]
        ref = b.processor(text=[text], images=list(images), return_tensors="pt")
        assert fast._token_ids(text, entries) == ref["input_ids"][0].tolist()
    assert fast.stats["text_hits"] >= 6 and fast.stats["ids_hits"] >= 6
    assert len({t for t in fast._text_memo.values()}) >= 4  # different turns keep different texts


def test_repetition_penalty_and_eos_follow_generate(backbone):
    b = backbone("qwen2_5_vl")
    gc = b.model.generation_config
    saved = (gc.repetition_penalty, gc.eos_token_id)
    try:
        gc.repetition_penalty = 1.3
        plain, fast = PlainGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS)
        assert fast.repetition_penalty == 1.3
        calls = _episode(8, seed=11)
        answers = _compare(plain, fast, calls)
        # Make a token the model produces an end token: both must stop right after it.
        stop = answers[-1][1]
        gc.repetition_penalty = saved[0]
        gc.eos_token_id = [151645, stop]
        plain = PlainGenerator(b, NEW_TOKENS)
        # Eager, and with (stand-in) graphs: there the next step is queued before a token is read,
        # so a step past the EOS runs and must leave no trace in this answer or the next.
        for fast in (FastGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS, cuda_graphs="fake")):
            short = 0
            for messages, images, keys in calls:
                a, f = plain.generate(messages, images, keys), fast.generate(messages, images, keys)
                assert f.token_ids == a.token_ids
                short += len(a.token_ids) < NEW_TOKENS
            assert short > 0
    finally:
        gc.repetition_penalty, gc.eos_token_id = saved


def test_decode_attention_switch(backbone):
    """An eager-prefill model decoding with sdpa (the way flash-attention models decode here)."""
    b = backbone("qwen3_vl", "eager")
    plain, fast = PlainGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS, decode_attention="sdpa")
    _compare(plain, fast, _episode(6, seed=13))
    assert all(c._attn_implementation == "eager" for c in fast._attn_configs)  # restored after each step


def test_unsupported_settings_fall_back_with_one_reason(backbone, caplog):
    b = backbone("qwen3_vl")
    gc = b.model.generation_config
    gc.no_repeat_ngram_size = 3
    try:
        with caplog.at_level(logging.INFO, logger="internvla_s2_node.core.fast_generation"):
            assert make_fast_generator(b, NEW_TOKENS, required=False) is None
        reasons = [r.getMessage() for r in caplog.records if "fast generation path not used" in r.getMessage()]
        assert len(reasons) == 1 and "no_repeat_ngram_size" in reasons[0]
        with pytest.raises(RuntimeError, match="no_repeat_ngram_size"):
            make_fast_generator(b, NEW_TOKENS, required=True)
    finally:
        gc.no_repeat_ngram_size = 0


def test_engine_picks_the_fast_path(backbone):
    from internvla_s2_node.core.config import EngineConfig
    from internvla_s2_node.core.engine import S2Engine
    from internvla_s2_node.core.types import Frame

    b = backbone("qwen3_vl")
    decisions = {}
    for mode in ("auto", "off"):
        engine = S2Engine(EngineConfig(model_path=str(b.path), fast_path=mode, max_new_tokens=NEW_TOKENS, seed=1), backbone=b)
        assert engine.info["generator"] == ("FastGenerator" if mode == "auto" else "PlainGenerator")
        engine.reset(INSTRUCTION)
        rng = np.random.default_rng(2)
        out = []
        for _ in range(6):
            out.append(engine.step(Frame(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))).raw_text)
        decisions[mode] = out
    assert decisions["auto"] == decisions["off"]


def test_engine_prefix_reuse_parameter(backbone):
    """EngineConfig.prefix_reuse (the node's prefix_reuse parameter) reaches the fast path: over an episode
    the engine keeps part of each prompt and answers as the plain path does."""
    from internvla_s2_node.core.config import EngineConfig
    from internvla_s2_node.core.engine import S2Engine
    from internvla_s2_node.core.types import Frame

    b = backbone("qwen3_vl")
    answers = {}
    for reuse, mode in ((True, "auto"), (False, "off")):
        engine = S2Engine(EngineConfig(model_path=str(b.path), fast_path=mode, prefix_reuse=reuse, max_new_tokens=NEW_TOKENS, seed=1), backbone=b)
        engine.reset(INSTRUCTION)
        rng = np.random.default_rng(5)
        answers[reuse] = [engine.step(Frame(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))).raw_text for _ in range(10)]
        if reuse:
            fast = engine.generator
            assert fast.prefix_reuse and fast.stats["prefix_tokens_reused"] > 0
    assert answers[True] == answers[False]


@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_decode_gemv_wiring(backbone, monkeypatch, arch):
    """``decode_gemv='triton'``: the one-token projections (fused q/k/v and gate/up, o_proj, down_proj, the
    output head) go through the ``internvla_s2::gemv`` custom op, also inside the compiled decode layer; the
    model's own layers keep their modules. On CPU the op computes ``F.linear`` (the kernel needs CUDA: its
    values are checked in ``test_gemv_kernel_values``, its speed in benchmarks/decode_gemv.py)."""
    from internvla_s2_node.core.fast_generation import gemv

    b = backbone(arch)
    with pytest.raises(FastPathUnavailable, match="needs CUDA"):
        FastGenerator(b, NEW_TOKENS, decode_gemv="triton")
    with pytest.raises(ValueError, match="decode_gemv"):
        FastGenerator(b, NEW_TOKENS, decode_gemv="cutlass")
    calls, compute = [], gemv._compute
    monkeypatch.setattr(gemv, "available", lambda device: True)
    monkeypatch.setattr(gemv, "_compute", lambda x, w, bias: (calls.append(tuple(w.shape)), compute(x, w, bias))[1])
    fast = FastGenerator(b, NEW_TOKENS, cuda_graphs="fake", compile_decode=True, fuse_qkv=True, decode_gemv="triton")
    _compare(PlainGenerator(b, NEW_TOKENS), fast, _episode(3, seed=29))
    assert fast.failures == {}
    layer = b.model.model.language_model.layers[0]
    cfg = b.model.config.get_text_config()
    assert {tuple(layer.self_attn.o_proj.weight.shape), tuple(layer.mlp.down_proj.weight.shape),
            (2 * cfg.intermediate_size, cfg.hidden_size), tuple(b.model.lm_head.weight.shape)} <= set(calls)
    assert isinstance(fast._decode_stack[0]._modules["self_attn"]._modules["o_proj"], gemv.GemvLinear)
    assert isinstance(layer.self_attn.o_proj, torch.nn.Linear) and isinstance(layer.mlp.down_proj, torch.nn.Linear)


_GEMV_KERNEL_PROBE = """
import torch
from internvla_s2_node.core.fast_generation import gemv
gen = torch.Generator().manual_seed(0)
for n, k, bias, dtype in ((5, 33, False, torch.float32), (130, 1500, True, torch.float32), (67, 2100, True, torch.bfloat16)):
    w = torch.randn(n, k, generator=gen).to(dtype)
    x = torch.randn(k, generator=gen).to(dtype)
    b = torch.randn(n, generator=gen).to(dtype) if bias else None
    out = torch.empty(n, dtype=dtype)
    gemv.launch(x, w, b, out)
    ref = w.float() @ x.float() + (b.float() if bias else 0)
    err = (out.float() - ref).abs().max().item()
    tol = 1e-4 if dtype == torch.float32 else 0.05 * ref.abs().max().item() / 8
    assert err <= tol, (n, k, bias, dtype, err, tol)
    print(n, k, bias, dtype, err)
"""


def _run_interpreted(probe: str, *args: str, timeout: int = 300) -> list[str]:
    """``probe`` in a Python process of its own under Triton's interpreter (TRITON_INTERPRET=1 is read when
    the kernels are defined); asserts it succeeded and returns the lines it printed."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def test_gemv_kernel_values(tmp_path):
    """The Triton GEMV's values (masked row and column tails, bias, bf16 inputs with fp32 accumulation)
    against an fp32 reference, run by Triton's interpreter on the CPU (TRITON_INTERPRET=1, in a process of
    its own: the variable is read when the kernel is defined)."""
    assert len(_run_interpreted(_GEMV_KERNEL_PROBE)) == 3


_ATTENTION_KERNEL_PROBE = """
import torch
from internvla_s2_node.core.fast_generation import decode_attention as da
gen = torch.Generator().manual_seed(0)
# (heads, kv heads, cache capacity, span, visible slots, head dim, dtype): several chunks with a masked tail
# and a span shorter than the cache, 7 query heads per kv head (Qwen2.5-VL 7B), one slot visible, one group
cases = ((8, 2, 300, 300, 251, 32, torch.float32), (28, 4, 640, 520, 517, 64, torch.bfloat16),
         (4, 4, 130, 130, 1, 16, torch.float32), (32, 8, 256, 256, 200, 128, torch.bfloat16))
for h, kv, cap, span, visible, d, dtype in cases:
    q = torch.randn(1, h, 1, d, generator=gen).to(dtype)
    k = torch.randn(1, kv, cap, d, generator=gen).to(dtype)[:, :, :span]
    v = torch.randn(1, kv, cap, d, generator=gen).to(dtype)[:, :, :span]
    mask = (torch.arange(span) < visible).view(1, 1, 1, span)
    out = da.decode_attention(q, k, v, mask, d ** -0.5)
    ref = da.reference(q.float(), k.float(), v.float(), mask, d ** -0.5)
    err = (out.float() - ref).abs().max().item()
    tol = 1e-5 if dtype == torch.float32 else 0.02
    assert out.shape == (1, 1, h, d) and out.dtype == dtype and err <= tol, (h, kv, span, visible, d, dtype, err)
    print(h, kv, span, visible, d, dtype, err)
"""


def test_decode_attention_kernel_values():
    """The Triton decode attention (chunks of the cache, online fp32 softmax, masked slots not read, chunks
    merged) against the plain formula in fp32, run by Triton's interpreter on the CPU (in a process of its
    own: the variable is read when the kernels are defined). Its speed is for benchmarks/step_variants.py."""
    assert len(_run_interpreted(_ATTENTION_KERNEL_PROBE)) == 4


_ATTENTION_DECODE_PROBE = """
import sys, numpy as np, torch
from PIL import Image
from internvla_s2_node.core import prompt
from internvla_s2_node.core.backbone import load_backbone
from internvla_s2_node.core.fast_generation import DECODE_ATTENTION_TRITON, FastGenerator, decode_attention as da
from internvla_s2_node.core.generation import PlainGenerator
b = load_backbone(sys.argv[1], device="cpu", dtype="float32", attn_implementation="sdpa")
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for p in b.model.parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
launches, launch = [], da.launch
da.launch = lambda *a: (launches.append(1), launch(*a))[1]
plain, fast = PlainGenerator(b, 4), FastGenerator(b, 4, cuda_graphs="fake", decode_attention=DECODE_ATTENTION_TRITON)
rng = np.random.default_rng(0)
frames = [Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)) for _ in range(4)]
answers = set()
for t in range(4):
    images = frames[: t + 1]
    messages = [prompt.user_message(prompt.build_user_text("walk to the red door and stop", t, "then"), images)]
    a, f = plain.generate(messages, images, list(range(t + 1))), fast.generate(messages, images, list(range(t + 1)))
    assert a.token_ids == f.token_ids, (t, a.token_ids, f.token_ids)
    answers.add(tuple(a.token_ids))
print(len(launches), len(answers), sorted(fast.failures))
"""


def test_decode_attention_kernel_in_the_decode_step(tiny_checkpoint):  # noqa: F811
    """``decode_attention=DECODE_ATTENTION_TRITON``: the decode step's attention runs the kernels (here
    under Triton's interpreter, float32) and the answers are the plain path's."""
    launches, answers, failures = _run_interpreted(_ATTENTION_DECODE_PROBE, str(tiny_checkpoint("qwen3_vl")), timeout=600)[-1].split(" ", 2)
    tiny_layers = 2
    assert int(launches) >= 4 * 3 * tiny_layers  # 3 decode tokens a call, every layer
    assert int(answers) >= 2 and failures == "[]"


def test_decode_attention_wiring(backbone, monkeypatch):
    """The kernels' attention is reached inside the compiled decode layer through the
    ``internvla_s2::decode_attention`` custom op; without CUDA (or the interpreter) it is refused."""
    from internvla_s2_node.core.fast_generation import DECODE_ATTENTION_TRITON
    from internvla_s2_node.core.fast_generation import decode_attention as da

    b = backbone("qwen2_5_vl")
    with pytest.raises(FastPathUnavailable, match="needs CUDA"):
        FastGenerator(b, NEW_TOKENS, decode_attention=DECODE_ATTENTION_TRITON)
    calls = []
    monkeypatch.setattr(da, "available", lambda device: True)
    monkeypatch.setattr(da, "_compute", lambda *args: (calls.append(tuple(args[1].shape)), da.reference(*args))[1])
    fast = FastGenerator(b, NEW_TOKENS, cuda_graphs="fake", compile_decode=True, decode_attention=DECODE_ATTENTION_TRITON)
    _compare(PlainGenerator(b, NEW_TOKENS), fast, _episode(3, seed=31))
    assert fast.failures == {} and calls and all(len(shape) == 4 for shape in calls)


@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_tower_grid_constants_are_recorded_and_equal_the_towers_own(backbone, arch):
    """Issue 14 item 4 (vision): the grid-only work of the tower's forward (rotary positions, segment bounds,
    Qwen2.5-VL's window order, Qwen3-VL's position-embedding interpolation) is recorded once per frame shape
    through transformers' own helpers; given back as their precomputed keyword arguments, the tower gives
    exactly its own output, with the segment bounds on the host (so a captured forward never waits)."""
    from internvla_s2_node.core.fast_generation import vision

    b = backbone(arch)
    fast = FastGenerator(b, NEW_TOKENS)
    entry = fast._entry({}, None, _frames(1, seed=3)[0])
    grid = torch.tensor([entry.grid])
    with torch.inference_mode():
        own, constants = vision.record_grid_constants(fast.visual, lambda: fast._tower_outputs(fast.visual(entry.pixels, grid_thw=grid)))
        again = fast._tower_outputs(fast.visual(entry.pixels, grid_thw=grid, **constants))
    want = {"position_ids", "cu_seqlens"} | ({"window_index", "cu_window_seqlens"} if arch == "qwen2_5_vl" else {"interp_indices", "interp_weights"})
    assert set(constants) == want
    assert all(constants[k].device.type == "cpu" for k in vision.HOST_KEYS if k in constants)
    assert vision._same_outputs(again, own)
    # the helpers are the modeling module's own again
    module = sys.modules[type(fast.visual).__module__]
    assert all(getattr(module, n).__module__ == "transformers.vision_utils" for n in vision.GRID_HELPERS if hasattr(module, n))


def test_tower_graph_falls_back_to_block_graphs_when_its_check_fails(backbone, monkeypatch):
    """A tower whose recorded constants do not reproduce its own output (a transformers release that uses
    its grid differently) is not captured: the failure is noted once and the blocks' graphs serve, with
    the plain path's tokens."""
    from internvla_s2_node.core.fast_generation import vision

    real = vision.record_grid_constants

    def wrong_positions(visual, run):
        out, constants = real(visual, run)
        constants["position_ids"] = constants["position_ids"].flip(0)
        return out, constants

    monkeypatch.setattr(vision, "record_grid_constants", wrong_positions)
    b = backbone("qwen3_vl")
    plain = PlainGenerator(b, NEW_TOKENS)
    fast = FastGenerator(b, NEW_TOKENS, cuda_graphs="fake", vision_graphs=True, vision_tower_graph=True)
    _compare(plain, fast, _episode(4, seed=29))
    assert set(fast.failures) == {"vision_tower"} and "differs from its own output" in fast.failures["vision_tower"]
    assert fast.stats["vision_tower_graphs_captured"] == 0 and fast.stats["vision_graphs_captured"] >= len(b.model.model.visual.blocks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("decode_gemv", ["cublas", "triton"])
@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_cuda_graph_decoding_matches_plain(tiny_checkpoint, arch, decode_gemv):  # noqa: F811
    """On CUDA in float32: the graph-replayed decode gives the plain path's tokens (with cuBLAS or the
    Triton GEMV for the one-token projections)."""
    b = load_backbone(tiny_checkpoint(arch), device="cuda", dtype="float32", attn_implementation="sdpa")
    _spread_weights(b.model)
    b.model.to("cuda")
    plain, fast = PlainGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS, decode_gemv=decode_gemv)
    assert fast.graphs and fast.compile_decode and fast.compile_prefill and fast.vision_graphs and fast.vision_grouped
    assert fast.gemv == (decode_gemv == "triton")
    _compare(plain, fast, _episode(12, seed=17))
    assert fast.failures == {}
    assert fast.stats["prefill_graphs_captured"] >= 2 and fast.stats["decode_graphs_captured"] >= 1
    assert fast.stats["vision_graphs_captured"] >= len(b.model.model.visual.blocks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_cuda_decode_attention_kernel_matches_plain(tiny_checkpoint, arch):  # noqa: F811
    """On CUDA: the compiled kernels' values in bf16 (the 8B body's head layout) against the plain formula,
    and, in float32 with the default fast path around them, the plain path's tokens."""
    from internvla_s2_node.core.fast_generation import DECODE_ATTENTION_TRITON
    from internvla_s2_node.core.fast_generation import decode_attention as da

    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(shape, generator=g, device="cuda").bfloat16() for shape in ((1, 32, 1, 128), (1, 8, 2048, 128), (1, 8, 2048, 128)))
    mask = (torch.arange(2048, device="cuda") < 1417).view(1, 1, 1, 2048)
    err = (da.decode_attention(q, k, v, mask, 128**-0.5).float() - da.reference(q.float(), k.float(), v.float(), mask, 128**-0.5)).abs().max()
    assert err.item() < 0.02
    b = load_backbone(tiny_checkpoint(arch), device="cuda", dtype="float32", attn_implementation="sdpa")
    _spread_weights(b.model)
    b.model.to("cuda")
    plain, fast = PlainGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS, decode_attention=DECODE_ATTENTION_TRITON)
    _compare(plain, fast, _episode(12, seed=23))
    assert fast.failures == {} and fast.stats["decode_graphs_captured"] >= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_cuda_tower_graph_matches_plain(tiny_checkpoint, arch):  # noqa: F811
    """On CUDA in float32: the whole vision tower replayed from one graph per frame shape gives the plain
    path's tokens, and its capture worked (nothing in the captured forward waited for the device)."""
    b = load_backbone(tiny_checkpoint(arch), device="cuda", dtype="float32", attn_implementation="sdpa")
    _spread_weights(b.model)
    b.model.to("cuda")
    plain, fast = PlainGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS, vision_tower_graph=True)
    _compare(plain, fast, _episode(12, seed=19))
    assert fast.failures == {}
    assert fast.stats["vision_tower_graphs_captured"] == 2 and fast.stats["vision_graphs_captured"] == 0



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_cuda_prefix_reuse_matches_plain(tiny_checkpoint, arch):  # noqa: F811
    """Issue 14 item 4 on CUDA in float32: prefix reuse with the default fast path (captured prefill and decode
    graphs, compiled parts, grouped vision) gives the plain path's tokens over an episode whose history changes."""
    b = load_backbone(tiny_checkpoint(arch), device="cuda", dtype="float32", attn_implementation="sdpa")
    _spread_weights(b.model)
    b.model.to("cuda")
    plain, fast = PlainGenerator(b, NEW_TOKENS), FastGenerator(b, NEW_TOKENS, prefix_reuse=True)
    assert fast.graphs and fast.compile_prefill and fast.compile_decode and fast.gemv  # the Triton GEMV by default
    _compare(plain, fast, _episode(12, seed=41))
    assert fast.failures == {}
    assert fast.stats["prefix_tokens_reused"] > 0 and fast.stats["prefill_graphs_captured"] >= 2
    assert any(len(key) == 3 for key in fast._prefill_graphs)  # a graph after a kept prefix was replayed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_cuda_prefix_reuse_warm_up_covers_any_instruction(tiny_checkpoint, arch):  # noqa: F811
    """``test_prefix_reuse_warm_up_covers_any_instruction`` with real CUDA graphs and compiled prefill in
    float32: the graphs after a kept prefix are captured at position 0 in the warm-up and replayed at
    other kept lengths (the kept length read from the device)."""
    b = load_backbone(tiny_checkpoint(arch), device="cuda", dtype="float32", attn_implementation="sdpa")
    _spread_weights(b.model)
    b.model.to("cuda")
    fast = FastGenerator(b, NEW_TOKENS, prefix_reuse=True)
    assert fast.graphs and fast.compile_prefill and not fast.fake_graphs
    _warm_up_covers_other_instructions(b, fast)


_COMPILE_SETUP_PROBE = """
import sys, numpy as np, torch
from PIL import Image
from internvla_s2_node.core import prompt
from internvla_s2_node.core.backbone import load_backbone
from internvla_s2_node.core.fast_generation import FastGenerator
b = load_backbone(sys.argv[1], device="cpu", dtype="float32")
fast = FastGenerator(b, 2, cuda_graphs="fake", compile_decode=True, compile_prefill=True)
print("after init:", "torch._inductor.compile_fx" in sys.modules, fast._decode_fn == fast._decode_layers)
image = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
fast.generate([prompt.user_message(prompt.build_user_text("Go to the door.", 0, ""), [image])], [image], [0])
print("after a call:", "torch._inductor.compile_fx" in sys.modules, fast._decode_fn == fast._decode_layers)
"""


def test_compiler_is_set_up_by_the_first_call_not_at_construction(tiny_checkpoint):  # noqa: F811
    """Constructing the fast path (the engine's creation, before its first decision) imports no compiler:
    the first ``torch.compile`` costs about 2 s of host time. The first call (in a background build, the
    build thread's) makes the compiled functions. A fresh interpreter, so nothing was imported before."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _COMPILE_SETUP_PROBE, str(tiny_checkpoint("qwen3_vl"))],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("after")]
    assert lines == ["after init: False True", "after a call: True False"], out.stdout
