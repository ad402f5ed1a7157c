"""The offline CLIP tokenizer: known words are single tokens, anything else still tokenizes."""

from __future__ import annotations

from concepts.tokenizer import build_tokenizer

TOY_WORDS = (
    "a small large red orange yellow green blue purple circle square triangle star cross striped "
    "dotted outlined solid at the top bottom left right center on black gray white background"
).split()


def test_each_known_word_is_one_token():
    tokenizer = build_tokenizer(TOY_WORDS)
    for word in TOY_WORDS:
        ids = tokenizer(word).input_ids
        assert len(ids) == 3, (word, ids)  # BOS, word, EOS
    sentence = "a small red striped star at the top left on a black background"
    assert len(tokenizer(sentence).input_ids) == len(sentence.split()) + 2


def test_unknown_text_falls_back_to_characters_and_pads_to_77():
    tokenizer = build_tokenizer(TOY_WORDS)
    ids = tokenizer("zebra", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77
    assert tokenizer.decode(tokenizer("zebra").input_ids, skip_special_tokens=True).replace(" ", "") == "zebra"
