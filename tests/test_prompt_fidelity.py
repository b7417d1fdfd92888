"""The prompt against upstream InternNav's two loops (InternRobotics/InternNav @ 7a5c624).

``upstream_evaluator_text`` / ``upstream_robot_text`` restate, for comparison only, how
upstream fills its template: internnav/habitat_extensions/vln/habitat_vln_evaluator.py:740-762
(system-2 loop) and internnav/agent/internvla_n1_agent_realworld.py:178-202, then
internnav/model/utils/vln_utils.py:19-33 (``split_and_clean``) turns the text into content.
"""

import re

import numpy as np
import pytest
from PIL import Image

from internvla_s2_node.core import prompt

from fixtures_models import tiny_checkpoint  # noqa: F401
from test_engine_logic import frame, make_engine

TEMPLATE = (
    "You are an autonomous navigation assistant. Your task is to <instruction>. Where should you go next to stay "
    "on track? Please output the next waypoint's coordinates in the image. Please output STOP when you have "
    "successfully completed the task."
)
R2R_LIKE = [
    "Walk past the couch and wait near the stairs.",
    "Exit the bedroom, turn left  and stop by the sink.",  # two blanks: kept as the evaluator keeps them
    "Go up the stairs. Turn right at the top, then stop in the doorway.",
]


def upstream_split_and_clean(text):  # vln_utils.py:19-33
    parts = []
    for part in re.split(r"(<image>)", text):
        if part == "<image>":
            parts.append(part)
        elif part.replace("\n", "").strip():
            parts.append(part.replace("\n", "").strip())
    return parts


def _with_history(value, step_id, num_history, conjunction):
    if step_id > 0:  # habitat_vln_evaluator.py:746-753 (internvla_n1_agent_realworld.py:181-186 alike)
        ids = np.unique(np.linspace(0, step_id - 1, num_history, dtype=np.int32)).tolist()
        value += " These are your historical observations: " + "<image>\n" * len(ids) + "."
    return value + f" {conjunction}<image>."  # :759-760


def upstream_evaluator_text(instruction, step_id, num_history, conjunction):
    return _with_history(TEMPLATE.replace("<instruction>.", instruction[:-1]), step_id, num_history, conjunction)  # :742-744


def upstream_robot_text(instruction, step_id, num_history, conjunction):
    return _with_history(TEMPLATE.replace("<instruction>.", instruction), step_id, num_history, conjunction)  # :179


def texts(content):
    return [c["text"] if c["type"] == "text" else "<image>" for c in content]


def project_parts(instruction, n_history, conjunction, punctuation):
    text = prompt.build_user_text(instruction, n_history, conjunction, punctuation)
    return texts(prompt.to_content(text, list(range(n_history + 1))))


@pytest.mark.parametrize("instruction", R2R_LIKE)
@pytest.mark.parametrize("step_id", [0, 1, 20])
def test_habitat_evaluator_punctuation_gives_the_evaluators_text(instruction, step_id):
    """habitat_vln_evaluator.py:742-744: ``.replace('<instruction>.', instruction_text[:-1])``."""
    conj = prompt.CONJUNCTIONS[2]
    upstream = upstream_split_and_clean(upstream_evaluator_text(instruction, step_id, 8, conj))
    n_history = len(np.unique(np.linspace(0, step_id - 1, 8, dtype=np.int32))) if step_id else 0
    assert project_parts(instruction, n_history, conj, "habitat_evaluator") == upstream
    assert "stairs Where" in upstream[0] or "doorway Where" in upstream[0] or "sink Where" in upstream[0]


@pytest.mark.parametrize("instruction", R2R_LIKE)
def test_one_period_gives_the_robot_agents_text_for_period_terminated_instructions(instruction):
    """internvla_n1_agent_realworld.py:179: ``.replace('<instruction>.', instruction)`` (as given)."""
    conj = prompt.CONJUNCTIONS[0]
    upstream = upstream_split_and_clean(upstream_robot_text(" ".join(instruction.split()), 3, 8, conj))
    assert project_parts(instruction, 3, conj, "one_period") == upstream


def test_habitat_evaluator_token_ids_are_the_evaluators(tiny_checkpoint):
    """The evaluator's chat (habitat_vln_evaluator.py:764-776: content list, apply_chat_template, processor)
    and the engine's, rendered by a Qwen2.5-VL processor (real tokenizer and chat template, random weights
    elsewhere) to the same input ids."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_checkpoint("qwen2_5_vl"))
    images = [Image.new("RGB", (56, 56), (i * 30, 0, 0)) for i in range(3)]
    instruction = R2R_LIKE[0]

    def ids(parts):
        it = iter(images)
        content = [{"type": "image", "image": next(it)} if p == "<image>" else {"type": "text", "text": p} for p in parts]
        text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
        return processor(text=[text], images=images, return_tensors="pt").input_ids[0].tolist()

    upstream = ids(upstream_split_and_clean(upstream_evaluator_text(instruction, 2, 8, "there is ")))
    ours = ids(project_parts(instruction, 2, "there is ", "habitat_evaluator"))
    assert ours == upstream
    assert ids(project_parts(instruction, 2, "there is ", "one_period")) != upstream  # one '.' token more


def test_plainly_wrong_upstream_cases_are_not_followed():
    """habitat_vln_evaluator.py:743 cuts the last character whatever it is, vln_utils.py:30 deletes newlines
    (gluing words) and an ``<image>`` in the instruction adds a placeholder without an image (IndexError at
    :767); in both modes the project keeps the word, puts a blank and neutralises the placeholder."""
    assert "monito Where" in upstream_evaluator_text("Stop at the monitor", 0, 8, "there is ")
    assert prompt.instruction_text("Stop at the monitor", "habitat_evaluator") == "Stop at the monitor"
    assert prompt.instruction_text("Stop at the monitor", "one_period") == "Stop at the monitor."
    assert "upthe" in upstream_split_and_clean(upstream_evaluator_text("Go up\nthe stairs.", 0, 8, "there is "))[0]
    assert prompt.instruction_text("Go up\nthe stairs.", "habitat_evaluator") == "Go up the stairs"
    text = prompt.build_user_text("find the <image> poster.", 0, "there is ", "habitat_evaluator")
    assert text.count(prompt.IMAGE_TOKEN) == 1
    assert prompt.instruction_text("Wait here. ", "habitat_evaluator") == "Wait here"  # the period, not the blank
    with pytest.raises(ValueError, match="punctuation"):
        prompt.instruction_text("x", "none")


def test_engine_uses_the_configured_punctuation():
    for mode, expected in (("habitat_evaluator", "stairs Where"), ("one_period", "stairs. Where")):
        engine = make_engine(["STOP"], prompt_punctuation=mode)
        engine.reset("Walk past the couch and wait near the stairs.")
        engine.step(frame())
        first_text = engine.generator.calls[0][0][0]["content"][0]["text"]
        assert expected in first_text


def test_num_history_zero_leaves_the_history_sentence_out():
    """Upstream's evaluator with num_history 0 still appends "These are your historical observations: ."
    after step 0 (habitat_vln_evaluator.py:749-753: linspace(.., 0) is empty, the sentence is not). The project
    leaves it out: it introduces no image, and no released checkpoint was trained or scored with 0."""
    assert "historical observations: ." in upstream_evaluator_text(R2R_LIKE[0], 5, 0, "there is ")
    engine = make_engine(["↑"] * 3, num_history=0)
    engine.reset(R2R_LIKE[0])
    for i in range(3):
        engine.step(frame(i))
    for messages, images, keys in engine.generator.calls:
        assert len(images) == 1 and keys == [keys[-1]]
        assert "historical" not in " ".join(c.get("text", "") for c in messages[0]["content"])
