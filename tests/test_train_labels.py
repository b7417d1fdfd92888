"""Answer-only labels on a hand-built two-turn sample, and the batch loss over answer positions."""

import numpy as np
import pytest
import torch
from PIL import Image

from internvla_s2_node.core import prompt
from internvla_s2_node.core.tiny import default_tiny_checkpoint
from internvla_s2_node.train.collate import IGNORE_INDEX, PadCollator, count_label_tokens, encode_conversation, split_segments
from internvla_s2_node.train.trainer import AnswerHead, answer_positions


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(default_tiny_checkpoint("qwen3_vl"), local_files_only=True)
    proc.image_processor.size = {"shortest_edge": 32 * 32, "longest_edge": 64 * 64}
    return proc


def _image(value, w=64, h=64):
    return Image.fromarray(np.full((h, w, 3), value, np.uint8))


def _pixel_goal_conversation():
    history, current, look_down = [_image(10), _image(20)], _image(30), _image(40, 96, 64)
    text = prompt.build_user_text("walk to the sofa.", len(history), "there is ")
    messages = [
        prompt.user_message(text, [*history, current]),
        prompt.assistant_message("↓"),
        prompt.user_message(prompt.build_look_down_text("you can see "), [look_down]),
        prompt.assistant_message("12 7"),
    ]
    return messages, [*history, current, look_down]


def test_only_answer_tokens_carry_labels(processor):
    messages, images = _pixel_goal_conversation()
    enc = encode_conversation(processor, messages, images)
    ids, labels = enc["input_ids"], enc["labels"]
    tok = processor.tokenizer
    labelled = labels != IGNORE_INDEX
    assert torch.equal(labels[labelled], ids[labelled])
    assert tok.decode(ids[labelled]) == "↓<|im_end|>12 7<|im_end|>"
    # no image, vision-marker, role or prompt token is supervised
    image_ids = {tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>")}
    assert not any(int(i) in image_ids for i in ids[labelled])
    assert int((enc["mm_token_type_ids"] == 1).sum()) == int((ids == tok.convert_tokens_to_ids("<|image_pad|>")).sum()) > 0
    assert not labelled[enc["mm_token_type_ids"] == 1].any()
    # the labelled spans sit right after each generation prompt, end with <|im_end|>, and nothing else is labelled
    spans = torch.nonzero(labelled).flatten().tolist()
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    starts = [i for i in range(len(ids) - len(header)) if ids[i : i + len(header)].tolist() == header]
    expected = []
    for start in starts:
        j = start + len(header)
        while ids[j] != tok.convert_tokens_to_ids("<|im_end|>"):
            expected.append(j)
            j += 1
        expected.append(j)
    assert spans == expected
    assert enc["image_grid_thw"].shape[0] == 4


def test_training_tokens_equal_inference_tokens(processor):
    messages, images = _pixel_goal_conversation()
    enc = encode_conversation(processor, messages, images)
    full = processor.apply_chat_template(messages, tokenize=False)
    ref = processor(text=[full], images=images, return_tensors="pt")
    assert torch.equal(enc["input_ids"], ref["input_ids"][0])
    assert torch.equal(enc["pixel_values"], ref["pixel_values"])
    assert torch.equal(enc["mm_token_type_ids"], ref["mm_token_type_ids"][0])
    # each answer follows exactly the prompt the engine builds for that turn
    segments = split_segments(processor, messages)
    first_prompt = processor.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    second_prompt = processor.apply_chat_template(messages[:3], tokenize=False, add_generation_prompt=True)
    assert segments[0] == (first_prompt, False)
    assert "".join(t for t, _ in segments[:3]) == second_prompt
    assert [t for t, answer in segments if answer] == ["↓<|im_end|>", "12 7<|im_end|>"]


def test_single_turn_answers(processor):
    text = prompt.build_user_text("turn around", 0, "you can see ")
    for answer in ("STOP", "←←→", "→STOP"):
        enc = encode_conversation(processor, [prompt.user_message(text, [_image(5)]), prompt.assistant_message(answer)], [_image(5)])
        assert processor.tokenizer.decode(enc["input_ids"][enc["labels"] != IGNORE_INDEX]) == answer + "<|im_end|>"


def test_pad_collator_and_answer_positions(processor):
    messages, images = _pixel_goal_conversation()
    a = encode_conversation(processor, messages, images)
    short = [prompt.user_message(prompt.build_user_text("x", 0, "there is "), [_image(1)]), prompt.assistant_message("STOP")]
    b = encode_conversation(processor, short, [_image(1)])
    batch = PadCollator(pad_token_id=processor.tokenizer.pad_token_id)([a, b])
    n = len(a["input_ids"])
    assert batch["input_ids"].shape == (2, n) and len(b["input_ids"]) < n
    assert (batch["labels"][1, len(b["input_ids"]) :] == IGNORE_INDEX).all()
    assert batch["attention_mask"][1].sum() == len(b["input_ids"])
    assert batch["image_grid_thw"].shape[0] == 5 and batch["pixel_values"].shape[0] == a["pixel_values"].shape[0] + b["pixel_values"].shape[0]
    keep = answer_positions(batch["labels"])
    targets = batch["labels"][:, 1:][:, keep]
    assert int((targets != IGNORE_INDEX).sum()) == count_label_tokens(batch) == int((a["labels"] != IGNORE_INDEX).sum() + (b["labels"] != IGNORE_INDEX).sum())


def test_answer_position_loss_equals_full_loss(processor):
    from transformers import Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(default_tiny_checkpoint("qwen3_vl"), local_files_only=True).eval()
    messages, images = _pixel_goal_conversation()
    batch = PadCollator(processor.tokenizer.pad_token_id)([encode_conversation(processor, messages, images)] * 2)
    with torch.no_grad():
        full = model(**batch).loss * count_label_tokens(batch)  # mean over label tokens, as a sum
        labels = batch.pop("labels")
        keep = answer_positions(labels)
        logits = model(**batch, logits_to_keep=keep).logits
        assert logits.shape[:2] == (2, len(keep))
        ours = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[:, 1:][:, keep].flatten(), reduction="sum")
        # the trainer's AnswerHead: logits only where a label follows, the same loss
        head = AnswerHead(model.get_output_embeddings())
        targets = labels[:, 1:][:, keep]
        head.rows = targets != IGNORE_INDEX
        answer_logits = model(**batch, logits_to_keep=keep).logits
        head.rows = None
        assert answer_logits.shape == (count_label_tokens({"labels": labels}), logits.shape[-1])
        answers_only = torch.nn.functional.cross_entropy(answer_logits, targets[targets != IGNORE_INDEX], reduction="sum")
        assert model(**batch, logits_to_keep=keep).logits.shape == logits.shape  # rows=None: the head as before
    assert torch.allclose(full, ours, rtol=1e-4)
    assert torch.allclose(answers_only, ours, rtol=1e-5)
