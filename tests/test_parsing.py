import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from internvla_s2_node.core.actions import Action
from internvla_s2_node.core.parsing import OutputKind, parse_output

F, L, R, D, S = Action.FORWARD, Action.LEFT, Action.RIGHT, Action.LOOK_DOWN, Action.STOP


@pytest.mark.parametrize(
    "text,kind,actions,pixel",
    [
        ("STOP", OutputKind.STOP, (S,), None),
        ("  STOP\n", OutputKind.STOP, (S,), None),
        ("↑↑←", OutputKind.ACTIONS, (F, F, L), None),
        ("→", OutputKind.ACTIONS, (R,), None),
        ("↓", OutputKind.LOOK_DOWN, (D,), None),
        ("↑↑↓", OutputKind.ACTIONS, (F, F), None),
        ("↑STOP↑", OutputKind.ACTIONS, (F, S), None),
        ("(215, 310)", OutputKind.PIXEL_GOAL, (), (215, 310)),
        ("215,310", OutputKind.PIXEL_GOAL, (), (215, 310)),
        ("215 310", OutputKind.PIXEL_GOAL, (), (215, 310)),
        ("[12, 7, 99]", OutputKind.PIXEL_GOAL, (), (12, 7)),
    ],
)
def test_real_outputs(text, kind, actions, pixel):
    out = parse_output(text, image_size=(640, 480))
    assert out.kind == kind
    assert out.actions == actions
    assert out.pixel == pixel


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("I am not sure where to go", "no action"),
        ("go to 12", "two pixel coordinates"),
        ("(640, 100)", "outside"),
        ("(100, 480)", "outside"),
        ("(-3, 100)", "outside"),
        ("(99999999999999999999999, 1)", "outside"),
    ],
)
def test_malformed_outputs_are_a_clear_no_decision(text, reason):
    out = parse_output(text, image_size=(640, 480))
    assert out.kind == OutputKind.NONE
    assert reason in out.reason


def test_non_text_and_action_cap():
    assert parse_output(None).kind == OutputKind.NONE
    assert parse_output(b"STOP").kind == OutputKind.NONE
    assert len(parse_output("↑" * 100, max_actions=4).actions) == 4


def test_column_first_order_pinned():
    # Upstream's projection takes the first integer as the column (u), the second as the row (v).
    # In a 640 (wide) x 480 (high) image, column 600 / row 400 is inside; column 400 / row 600 is not.
    assert parse_output("600 400", image_size=(640, 480)).pixel == (600, 400)
    assert parse_output("400 600", image_size=(640, 480)).kind == OutputKind.NONE


@settings(max_examples=500, deadline=None)
@given(st.text(), st.integers(1, 2000), st.integers(1, 2000))
def test_arbitrary_text_never_raises_and_stays_in_image(text, w, h):
    out = parse_output(text, image_size=(w, h))
    assert out.kind in OutputKind
    if out.pixel is not None:
        assert 0 <= out.pixel[0] < w and 0 <= out.pixel[1] < h
    if out.kind == OutputKind.NONE:
        assert out.reason
