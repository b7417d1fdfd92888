"""Decisions from the first frame (issue 14 item 1): the plain path answers while the fast path builds
in a thread, the switch comes between steps, and answers do not change with it (float32: same tokens).

CPU, tiny checkpoints with weights spread as in ``test_fast_generation`` (so that answers depend on the
input). The CUDA side (compile and graph capture in the thread) is measured by ``benchmarks/s2_step.py
--startup``; here the fast path's graphs are the CPU stand-in where a test says so.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from fixtures_models import tiny_checkpoint  # noqa: F401  (pytest fixture)
from test_fast_generation import INSTRUCTION, NEW_TOKENS, _episode, _spread_weights

from internvla_s2_node.core import compile_cache
from internvla_s2_node.core.backbone import load_backbone
from internvla_s2_node.core.config import EngineConfig
from internvla_s2_node.core.engine import S2Engine
from internvla_s2_node.core.fast_generation import FastGenerator
from internvla_s2_node.core.generation import PlainGenerator
from internvla_s2_node.core.types import Frame
from internvla_s2_node.core.warm_start import BackgroundBuild


@pytest.fixture(scope="module")
def backbone(tiny_checkpoint):  # noqa: F811
    b = load_backbone(tiny_checkpoint("qwen2_5_vl"), device="cpu", dtype="float32", attn_implementation="sdpa")
    _spread_weights(b.model, seed=3)
    return b


def _frames(n: int, seed: int = 2):
    rng = np.random.default_rng(seed)
    return [Frame(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for _ in range(n)]


def _engine(b, tmp_path, **cfg):
    cfg = dict(dict(model_path=str(b.path), max_new_tokens=NEW_TOKENS, seed=1, num_history=3, compile_cache_dir=str(tmp_path / "cc")), **cfg)
    return S2Engine(EngineConfig(**cfg), backbone=b)


def test_plain_answers_while_the_fast_path_builds_then_it_switches(backbone, tmp_path, monkeypatch):
    # The build is held at its start until the test lets it go (the real warm-up then runs), so that
    # "answers while building" does not depend on how fast this machine is.
    gate = threading.Event()
    warm_up = FastGenerator.warm_up

    def held(self, requests, check=None):
        assert gate.wait(60)
        warm_up(self, requests, check)

    monkeypatch.setattr(FastGenerator, "warm_up", held)
    reference = _engine(backbone, tmp_path, fast_path="off")
    engine = _engine(backbone, tmp_path, fast_path="auto", fast_path_build="background")
    assert engine.path == "plain" and engine.serving["fast_path_build"] == "building"
    frames = _frames(10)
    for e in (reference, engine):
        e.reset(INSTRUCTION)
    answers, paths = [], []
    for t, frame in enumerate(frames):
        if t == 4:
            gate.set()
            assert engine.fast_build.wait(120)
            assert engine.serving["fast_path_build"] == "ready"
            assert engine.path == "plain"  # the switch waits for the next step
        ref, got = reference.step(frame), engine.step(frame)
        assert got.raw_text == ref.raw_text, f"step {t}: {got.raw_text!r} != {ref.raw_text!r}"
        answers.append(ref.raw_text)
        paths.append(got.path)
    assert paths == ["plain"] * 4 + ["fast"] * 6
    assert reference.step(frames[0]).path == "plain"
    assert len(set(answers)) >= 3, f"degenerate answers: {set(answers)}"
    fast = engine.generator
    assert isinstance(fast, FastGenerator)
    # one per history length 0..num_history, and a look-down turn at the camera's size (known after the first step)
    assert fast.stats["warmup_calls"] == 4 + 1
    # Warm-up frames are forgotten: the first fast step encoded the episode's own frames.
    assert not any(isinstance(k, tuple) for k in fast._frames)
    assert engine.serving == {"generator": "FastGenerator", "path": "fast", "prime_s": None, "fast_path_build": "ready",
                              "fast_path_build_s": engine.fast_build.seconds}


def test_build_runs_alongside_the_plain_path_without_changing_it(backbone):
    """The fast path (stand-in graphs, fused projections, vision-block graphs) built in a thread while the
    plain path generates on the same model in this one: the plain answers are those it gives alone, the
    model's own modules stay in place, and afterwards the fast path gives the same tokens."""
    calls = _episode(6, seed=31, look_down_every=0)
    plain = PlainGenerator(backbone, NEW_TOKENS)
    alone = [plain.generate(*c).token_ids for c in calls]
    attn = backbone.model.model.language_model.layers[0].self_attn
    q_proj, attn_impl = attn.q_proj, attn.config._attn_implementation
    fast = FastGenerator(backbone, NEW_TOKENS, cuda_graphs="fake", vision_graphs=True, fuse_qkv=True)
    warm = _episode(4, seed=32, look_down_every=0)

    def build(check):
        fast.warm_up(warm, check)
        return fast

    job = BackgroundBuild(build).start()
    overlapped = 0
    while not job.done():
        for c, want in zip(calls, alone):
            assert plain.generate(*c).token_ids == want
            overlapped += not job.done()
            assert attn.q_proj is q_proj and attn.config._attn_implementation == attn_impl
    assert job.state == "ready" and job.error == "" and overlapped >= 1
    assert job.take() is fast and job.take() is None
    for c, want in zip(calls, alone):
        assert fast.generate(*c).token_ids == want
    assert fast.failures == {} and fast.stats["decode_graphs_captured"] >= 1


def test_a_failed_build_leaves_the_plain_path_serving(backbone, tmp_path, monkeypatch):
    def broken(self, requests, check=None):
        raise RuntimeError("capture failed")

    monkeypatch.setattr(FastGenerator, "warm_up", broken)
    monkeypatch.setattr(S2Engine, "build_wait_s", 0.2)  # no step comes first here
    engine = _engine(backbone, tmp_path, fast_path="auto", fast_path_build="background")
    assert engine.fast_build.wait(60)
    engine.reset(INSTRUCTION)
    assert engine.step(_frames(1)[0]).path == "plain"
    assert engine.serving["fast_path_build"] == "failed: RuntimeError: capture failed"


def test_close_cancels_a_build_in_progress(backbone, tmp_path, monkeypatch):
    entered, gate = threading.Event(), threading.Event()
    warm_up = FastGenerator.warm_up

    def held(self, requests, check=None):
        entered.set()
        assert gate.wait(60)
        warm_up(self, requests, check)  # its first check() raises: the engine was closed

    monkeypatch.setattr(FastGenerator, "warm_up", held)
    engine = _engine(backbone, tmp_path, fast_path="auto", fast_path_build="background")
    waiting = engine.fast_build
    engine.close()  # while the build still waits for the first decision
    assert waiting.wait(60) and waiting.state == "cancelled" and not entered.is_set()
    engine = _engine(backbone, tmp_path, fast_path="auto", fast_path_build="background")
    engine.build_now()
    assert entered.wait(60)
    engine.close()  # while it builds
    gate.set()
    build = engine.fast_build
    assert build.wait(60) and build.state == "cancelled" and build.take() is None


def test_the_build_starts_after_the_first_decision(backbone, tmp_path, monkeypatch):
    """The first decision does not share the interpreter with the compile: the build waits for it
    (or for ``build_wait_s`` without one)."""
    import time

    started = []
    warm_up = FastGenerator.warm_up

    def timed(self, requests, check=None):
        started.append(time.monotonic())
        warm_up(self, requests, check)

    monkeypatch.setattr(FastGenerator, "warm_up", timed)
    monkeypatch.setattr(S2Engine, "build_wait_s", 60.0)
    engine = _engine(backbone, tmp_path, fast_path="auto", fast_path_build="background")
    engine.reset(INSTRUCTION)
    time.sleep(0.5)
    assert started == [] and engine.serving["fast_path_build"] == "building"
    decision = engine.step(_frames(1)[0])
    first_decided = time.monotonic()
    assert decision.path == "plain"
    assert engine.fast_build.wait(120) and engine.fast_build.state == "ready"
    assert len(started) == 1 and started[0] >= first_decided - 0.05
    monkeypatch.setattr(S2Engine, "build_wait_s", 0.3)  # no decision at all: it starts anyway
    idle = _engine(backbone, tmp_path, fast_path="auto", fast_path_build="background")
    assert idle.fast_build.wait(120) and idle.fast_build.state == "ready" and len(started) == 2


def test_inline_keeps_the_fast_path_from_the_first_step(backbone, tmp_path):
    engine = _engine(backbone, tmp_path, fast_path="auto")  # auto on CPU: nothing to compile, inline
    assert engine.fast_build is None and engine.path == "fast"
    assert engine.serving == {"generator": "FastGenerator", "path": "fast", "prime_s": None, "fast_path_build": "inline"}
    off = _engine(backbone, tmp_path, fast_path="off")
    assert off.serving == {"generator": "PlainGenerator", "path": "plain", "prime_s": None, "fast_path_build": "off"}


def test_the_prime_at_creation_changes_no_decision(backbone, tmp_path, monkeypatch, caplog):
    """On CUDA creation runs one plain step (the first use of the GPU's kernels belongs to load); forced on
    for the CPU here: it is timed, and an episode's decisions are those of an engine without it."""
    frames = _frames(6, seed=7)
    unprimed = _engine(backbone, tmp_path, fast_path="off")
    assert unprimed.prime_s is None and unprimed.serving["prime_s"] is None
    monkeypatch.setattr(S2Engine, "prime_devices", ("cpu",))
    with caplog.at_level("INFO", logger="internvla_s2_node.core.engine"):
        primed = _engine(backbone, tmp_path, fast_path="off")
    assert isinstance(primed.prime_s, float) and primed.prime_s > 0 and primed.serving["prime_s"] == primed.prime_s
    assert "primed the plain path" in caplog.text
    assert len(primed.history) == 0 and primed.instruction is None and not primed._decided.is_set()
    episodes = []
    for engine in (unprimed, primed):
        engine.reset(INSTRUCTION)
        episodes.append([(d.kind, d.raw_text, d.actions, d.pixel) for d in map(engine.step, frames)])
    assert episodes[1] == episodes[0]
    assert len({raw for _, raw, _, _ in episodes[0]}) >= 2, f"degenerate answers: {episodes[0]}"
    building = _engine(backbone, tmp_path, fast_path="auto", fast_path_build="background")  # primed too
    assert building.prime_s > 0 and not building._decided.is_set() and building.serving["fast_path_build"] == "building"
    building.close()


def test_compile_cache_points_torch_at_the_project_directory(backbone, tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.setenv("INTERNVLA_S2_CACHE", str(tmp_path / "s2"))
    assert compile_cache.cache_root("") == tmp_path / "s2" / "compile"
    assert compile_cache.cache_root("off") is None and compile_cache.configure(None) == {}
    where = compile_cache.configure(tmp_path / "cc")
    import os

    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import cache_dir, triton_cache_dir

    assert cache_dir() == os.environ["TORCHINDUCTOR_CACHE_DIR"] == str((tmp_path / "cc" / "inductor").resolve())
    assert triton_cache_dir(0).startswith(where["inductor"]) and inductor_config.fx_graph_cache is True
    key = compile_cache.artifact_key(backbone, max_new_tokens=6)
    assert key == compile_cache.artifact_key(backbone, max_new_tokens=6) != compile_cache.artifact_key(backbone, max_new_tokens=7)
    assert key.startswith("Qwen2_5_VLForConditionalGeneration-")
    path = compile_cache.artifact_path(tmp_path / "cc", key)
    assert not compile_cache.load_artifacts(path)  # none yet
    # A compile through Inductor (CPU backend) leaves artifacts that the API saves and loads.
    torch._dynamo.reset()
    fn = torch.compile(lambda x: torch.sin(x) * 2 + 1)
    fn(torch.arange(8.0))
    if not compile_cache.save_artifacts(path):
        pytest.skip("this torch recorded no cache artifacts for the compile")
    assert path.is_file() and path.stat().st_size > 0
    assert compile_cache.load_artifacts(path)
    (path.parent / "broken.bin").write_bytes(b"not artifacts")
    assert not compile_cache.load_artifacts(path.parent / "broken.bin")
