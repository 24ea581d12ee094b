"""Llama2Tokenizer against the SentencePiece processor it wraps (bundled model and one trained here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm

from torchtune_lite.data import Message
from torchtune_lite.models.llama2._tokenizer import Llama2Tokenizer, llama2_tokenizer

ASSETS = Path(__file__).resolve().parents[4] / "torchtune_lite" / "assets" / "tiny"
BUNDLED = ASSETS / "tokenizer.model"


@pytest.fixture(scope="module")
def tok() -> Llama2Tokenizer:
    return Llama2Tokenizer(str(BUNDLED))


@pytest.fixture(scope="module")
def sp() -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(BUNDLED))


@pytest.fixture(scope="module")
def trained_with_pad(tmp_path_factory) -> Path:
    """A tiny SentencePiece model trained here, with an explicit pad piece (id 3)."""
    root = tmp_path_factory.mktemp("spm")
    words = "the cat sat on a mat while a dog ran in the park and birds sang above the old tree".split()
    lines = [" ".join(words[(i * 7) % len(words):] + words[: (i * 7) % len(words)]) for i in range(120)]
    (root / "corpus.txt").write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(root / "corpus.txt"), model_prefix=str(root / "m"), vocab_size=60, model_type="bpe",
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, minloglevel=2,
    )
    return root / "m.model"


def test_ids_match_sentencepiece(tok, sp):
    assert tok.vocab_size == sp.get_piece_size() == 1024
    assert (tok.bos_id, tok.eos_id) == (sp.bos_id(), sp.eos_id()) == (1, 2)
    text = "The white rabbit dances in the rain."
    assert tok.encode(text, add_bos=False, add_eos=False) == sp.encode(text)


@pytest.mark.parametrize(
    "text, decoded",
    [
        ("hello world", "hello world"),
        ("Arr! The yellow crab runs very fast, matey!", "Arr! The yellow crab runs very fast, matey!"),
        # the model's normalizer collapses whitespace; byte fallback keeps unseen characters
        ("  spaces\nand\tüñí 字 🙂", "spaces and üñí 字 🙂"),
    ],
)
def test_round_trip(tok, text, decoded):
    ids = tok.encode(text)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.bos_id not in ids[1:-1] and tok.eos_id not in ids[1:-1]
    assert tok.sp.unk_id() not in ids  # byte fallback: nothing is unknown
    assert tok.decode(ids) == tok.decode(ids[1:-1]) == decoded


def test_bos_eos_flags(tok):
    body = tok.encode("a fish", add_bos=False, add_eos=False)
    assert tok.encode("a fish", add_bos=True, add_eos=False) == [tok.bos_id] + body
    assert tok.encode("a fish", add_bos=False, add_eos=True) == body + [tok.eos_id]
    assert tok.encode("", add_bos=True, add_eos=True) == [tok.bos_id, tok.eos_id]


def test_pad_id_zero_without_pad_piece(tok):
    assert tok.sp.pad_id() == -1
    assert tok.pad_id == 0


def test_pad_id_from_model(trained_with_pad):
    tok = llama2_tokenizer(str(trained_with_pad), max_seq_len=8)
    assert tok.pad_id == 3 and tok.max_seq_len == 8
    assert tok.decode(tok.encode("the cat sat on a mat")) == "the cat sat on a mat"


def test_tokenize_messages_masks_and_specials(tok):
    messages = [
        Message("system", "Be a pirate.", masked=True),
        Message("user", "Where does the crab live?", masked=True),
        Message("assistant", "In the sea, matey!"),
    ]
    tokens, mask = tok.tokenize_messages(messages)
    parts = [tok.encode(m.content, add_bos=False, add_eos=False) for m in messages]
    expected = [tok.bos_id] + parts[0] + parts[1] + parts[2] + [tok.eos_id]
    assert tokens == expected
    n_masked = 1 + len(parts[0]) + len(parts[1])
    assert mask == [True] * n_masked + [False] * (len(parts[2]) + 1)
    assert tokens.count(tok.bos_id) == 1 and tokens.count(tok.eos_id) == 1


def test_tokenize_messages_eos_after_each_assistant_turn(tok):
    messages = [Message("user", "hi", True), Message("assistant", "yo"), Message("user", "again", True), Message("assistant", "ho")]
    tokens, mask = tok.tokenize_messages(messages)
    assert tokens.count(tok.eos_id) == 2
    eos_positions = [i for i, t in enumerate(tokens) if t == tok.eos_id]
    assert all(not mask[i] for i in eos_positions)  # the model learns to stop
    assert len(tokens) == len(mask)


def test_truncation(tok):
    messages = [Message("user", "one two three four five six seven", True), Message("assistant", "eight nine ten")]
    full, full_mask = tok.tokenize_messages(messages)
    short = Llama2Tokenizer(str(BUNDLED), max_seq_len=5)
    tokens, mask = short.tokenize_messages(messages)
    # cut to 5, and the sample still ends in EOS (it did before the cut), but that EOS is not trained on
    assert tokens == full[:4] + [tok.eos_id] and mask == full_mask[:4] + [True]
    untruncated, _ = short.tokenize_messages(messages, truncate=False)
    assert untruncated == full
    # encode itself never truncates
    assert len(short.encode("one two three four five six seven")) > 5


def test_truncation_without_eos_keeps_the_prefix(tok):
    messages = [Message("user", "one two three four five six seven", True)]  # no assistant turn: no EOS
    full, full_mask = tok.tokenize_messages(messages)
    tokens, mask = Llama2Tokenizer(str(BUNDLED), max_seq_len=4).tokenize_messages(messages)
    assert tokens == full[:4] and mask == full_mask[:4] and tok.eos_id not in tokens


def test_short_sample_is_untouched_by_truncate(tok):
    short = Llama2Tokenizer(str(BUNDLED), max_seq_len=64)
    tokens = short.encode("a fish")
    assert short.truncate(tokens, [False] * len(tokens)) == (tokens, [False] * len(tokens))


def test_max_seq_len_too_short():
    with pytest.raises(ValueError, match="max_seq_len=1 is too short"):
        Llama2Tokenizer(str(BUNDLED), max_seq_len=1)


def test_llama2_chat_prompt_template(tok):
    chat = Llama2Tokenizer(str(BUNDLED), prompt_template="llama2_chat")
    messages = [
        Message("system", "Be a pirate.", masked=True),
        Message("user", "Where does the crab live?", masked=True),
        Message("assistant", "In the sea, matey!"),
        Message("user", "And the hen?", masked=True),
        Message("assistant", "On the farm!"),
    ]
    tokens, mask = chat.tokenize_messages(messages)
    first_user = "[INST] <<SYS>>\nBe a pirate.\n<</SYS>>\n\nWhere does the crab live? [/INST]"
    pieces = [
        (tok.encode(first_user, add_bos=True, add_eos=False), True),
        (tok.encode("In the sea, matey! ", add_bos=False, add_eos=True), False),
        (tok.encode("[INST] And the hen? [/INST]", add_bos=True, add_eos=False), True),  # BOS opens each exchange
        (tok.encode("On the farm! ", add_bos=False, add_eos=True), False),
    ]
    assert tokens == [t for ids, _ in pieces for t in ids]
    assert mask == [m for ids, m in pieces for _ in ids]
    # a callable works the same as the name
    assert Llama2Tokenizer(str(BUNDLED), prompt_template=chat.prompt_template).tokenize_messages(messages) == (tokens, mask)


def test_unknown_prompt_template():
    with pytest.raises(ValueError, match="prompt_template='chatml' is unknown.*llama2_chat"):
        Llama2Tokenizer(str(BUNDLED), prompt_template="chatml")


def test_not_a_sentencepiece_file(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": {"type": "BPE"}}\n{"more": 1}\n')
    with pytest.raises(ValueError) as err:
        Llama2Tokenizer(str(bad))
    message = str(err.value)
    assert str(bad) in message and "\n" not in message and "SentencePiece" in message


def test_missing_path(tmp_path):
    missing = tmp_path / "nope" / "tokenizer.model"
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        Llama2Tokenizer(str(missing))
    assert str(missing) in str(err.value)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Llama2Tokenizer(str(tmp_path))
