"""What the fast path serves: supported attention, greedy settings of the generation config, sizes."""

from __future__ import annotations

SUPPORTED_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")
DEFAULT_CACHE_FRAMES = 256
PREFILL_BUCKET = 64  # prompts are padded at the end to a multiple of this (one prefill graph per bucket)
ROPE_MEMO = 32  # prompts whose mrope positions are kept (an episode repeats a few)
TEXT_MEMO = 32  # chat texts and their token ids kept (the same few repeat within an episode)
INSTRUCTION_MARGIN = 256  # tokens: the warm-up covers prompts this much longer than its own (other instructions)
CAPACITY_STEP = 1024  # static KV cache length grows in these steps (decode graph recaptured then)

_UNSUPPORTED_GENERATION = {
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "min_new_tokens": None,
    "guidance_scale": None,
}


class FastPathUnavailable(RuntimeError):
    """The fast path cannot serve this backbone; the message says why."""



def _greedy_settings(model) -> tuple[set[int], float]:
    """EOS ids and repetition penalty of greedy ``generate`` with this model's generation config."""
    gc_ = getattr(model, "generation_config", None)
    if gc_ is None:
        return set(), 1.0
    for name, neutral in _UNSUPPORTED_GENERATION.items():
        value = getattr(gc_, name, neutral)
        if value not in (neutral, None, 0, [], ()) and not (name.endswith("penalty") and value == 1.0):
            raise FastPathUnavailable(f"generation config sets {name}={value!r}, which the fast path does not apply")
    if (getattr(gc_, "min_length", 0) or 0) > 1:
        raise FastPathUnavailable(f"generation config sets min_length={gc_.min_length}")
    eos = gc_.eos_token_id
    eos_ids = set() if eos is None else ({int(eos)} if isinstance(eos, int) else {int(e) for e in eos})
    penalty = float(getattr(gc_, "repetition_penalty", 1.0) or 1.0)
    return eos_ids, penalty


def _attn_implementation(config) -> str:
    return getattr(config, "_attn_implementation", None) or "eager"
