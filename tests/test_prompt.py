import pytest

from internvla_s2_node.core import prompt


def test_first_step_has_no_history():
    text = prompt.build_user_text("Walk to the sofa.", 0, "you can see ")
    assert text.startswith("You are an autonomous navigation assistant. Your task is to Walk to the sofa. Where")
    assert "historical" not in text
    assert text.endswith(" you can see <image>.")
    assert text.count("<image>") == 1


def test_history_placeholders_and_content_split():
    text = prompt.build_user_text("go left", 3, "there is ")
    assert " These are your historical observations: " in text
    assert text.count("<image>") == 4
    content = prompt.to_content(text, ["h0", "h1", "h2", "cur"])
    kinds = [c["type"] for c in content]
    assert kinds == ["text", "image", "image", "image", "text", "image", "text"]
    # upstream strips text pieces: no newline, no leading/trailing blanks
    assert content[0]["text"].endswith("historical observations:")
    assert content[4]["text"] == ". there is"
    assert content[-1]["text"] == "."
    assert [c["image"] for c in content if c["type"] == "image"] == ["h0", "h1", "h2", "cur"]


def test_placeholder_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="placeholders"):
        prompt.to_content(prompt.build_user_text("x", 2, "there is "), ["a"])


def test_conjunction_picker_is_seedable():
    a = prompt.ConjunctionPicker(seed=3)
    b = prompt.ConjunctionPicker(seed=3)
    seq_a = [a.pick() for _ in range(20)]
    assert seq_a == [b.pick() for _ in range(20)]
    assert set(seq_a) <= set(prompt.CONJUNCTIONS) and len(set(seq_a)) > 1
    a.reset()
    assert [a.pick() for _ in range(20)] == seq_a
    first = prompt.ConjunctionPicker(mode="first")
    assert {first.pick() for _ in range(5)} == {"you can see "}
    with pytest.raises(ValueError):
        prompt.ConjunctionPicker(mode="sometimes")


def test_look_down_turn_text():
    content = prompt.to_content(prompt.build_look_down_text("you can see "), ["img"])
    assert content == [{"type": "text", "text": "you can see"}, {"type": "image", "image": "img"}, {"type": "text", "text": "."}]
