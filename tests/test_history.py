import numpy as np
import pytest

from internvla_s2_node.core.history import HistoryBuffer, history_indices


def upstream(t, n=8):
    if t == 0:
        return []
    return np.unique(np.linspace(0, t - 1, n, dtype=np.int32)).tolist()


@pytest.mark.parametrize("num_history", [1, 4, 8])
def test_indices_equal_upstream_formula(num_history):
    for t in range(0, 501):
        assert history_indices(t, num_history) == upstream(t, num_history), t


def test_spread_over_whole_episode_not_last_frames():
    idx = history_indices(100, 8)
    assert idx[0] == 0 and idx[-1] == 99 and len(idx) == 8


def test_buffer_exact_up_to_capacity():
    """Selects before appending; the engine appends first: see test_engine_history_exact_up_to_capacity."""
    buf = HistoryBuffer[int](capacity=512)
    for t in range(0, 513):
        sel = buf.select(t, 8)
        assert [i for i, _ in sel] == upstream(t), t
        assert [f for _, f in sel] == upstream(t)  # frame payload is its own index
        buf.append(t)


def test_buffer_bounded_and_graceful_beyond_capacity():
    cap = 64
    buf = HistoryBuffer[int](capacity=cap)
    for t in range(5000):
        buf.append(t)
        assert buf.kept <= cap + 1  # capacity history frames + the current one
        if t % 97 == 0 and t > 0:
            wanted = upstream(t)
            got = [i for i, _ in buf.select(t, 8)]
            # never a later frame, error below the stride, still spans the episode
            for w, g in zip(wanted, got):
                assert g <= w and w - g < buf.stride
            assert got[0] == 0
            assert got[-1] >= (t - 1) - buf.stride
    assert len(buf) == 5000
    assert buf.stride > 1


def test_clear_and_bad_capacity():
    buf = HistoryBuffer[int](capacity=4)
    for t in range(10):
        buf.append(t)
    buf.clear()
    assert len(buf) == 0 and buf.kept == 0 and buf.stride == 1
    with pytest.raises(ValueError):
        HistoryBuffer(capacity=1)
    with pytest.raises(IndexError):
        buf.resolve(3)


def test_get_returns_kept_frames_only():
    h = HistoryBuffer(capacity=4)
    for i in range(6):
        assert h.append(f"f{i}") == i
    # capacity 4 exceeded: stride 2, odd indices thinned out
    assert h.get(4) == "f4" and h.get(2) == "f2"
    assert h.get(5) is None and h.get(3) is None and h.get(99) is None


@pytest.mark.parametrize("observe_first", [True, False])
def test_engine_history_exact_up_to_capacity(observe_first):
    """Through the engine, which records the current frame before it selects (as the node does with
    observe() then step(index)): at every step t <= history_capacity the model sees upstream's frames
    unique(linspace(0, t-1, 8, int32)) (InternNav internnav/habitat_extensions/vln/habitat_vln_evaluator.py:749-751,
    internvla_n1_agent_realworld.py:184), and the current frame t; at t = 512 that is [0, 73, ..., 511]."""
    from test_engine_logic import make_engine

    from internvla_s2_node.core.types import Frame

    cap = 512
    engine = make_engine(["\u2191"] * (cap + 2), history_capacity=cap, resize_w=28, resize_h=28)
    engine.reset("go")
    rgb = np.zeros((8, 8, 3), np.uint8)
    for t in range(cap + 1):
        index = engine.observe(rgb) if observe_first else None
        engine.step(Frame(rgb), index)
        keys = engine.generator.calls[-1][2]
        assert keys == upstream(t) + [t], t
    assert keys[:-1] == [0, 73, 146, 219, 292, 365, 438, 511]
    assert engine.history.kept == cap + 1
    engine.step(Frame(rgb), engine.observe(rgb) if observe_first else None)  # t = 513: thinned, bounded
    assert engine.history.kept <= cap + 1 and engine.history.stride == 2
