"""The Alpaca prompt: identical to the published template text, with and without an input."""

from torchtune_lite.data import Message, format_alpaca_prompt


def test_without_input():
    assert format_alpaca_prompt("Name a fish.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nName a fish.\n\n### Response:\n"
    )
    assert format_alpaca_prompt("Name a fish.", "") == format_alpaca_prompt("Name a fish.")


def test_with_input():
    prompt = format_alpaca_prompt("Add the numbers.", "1, 2")
    assert prompt.startswith("Below is an instruction that describes a task, paired with an input")
    assert prompt.endswith("### Instruction:\nAdd the numbers.\n\n### Input:\n1, 2\n\n### Response:\n")


def test_braces_in_content_are_kept():
    assert "{x}" in format_alpaca_prompt("Format {x}", "{0}") and "{0}" in format_alpaca_prompt("a", "{0}")


def test_message_defaults():
    m = Message("user", "hi")
    assert m.masked is False and m.role == "user"


def test_message_role_and_content_checked():
    import pytest

    with pytest.raises(ValueError, match="role 'tool' is not one of"):
        Message("tool", "x")
    with pytest.raises(ValueError, match="must be text, got int"):
        Message("user", 3)


def test_llama2_chat_template_layout():
    from torchtune_lite.data import llama2_chat_template

    out = llama2_chat_template(
        [Message("system", "S", masked=True), Message("user", "U1", masked=True), Message("assistant", "A1"),
         Message("user", "U2", masked=False), Message("assistant", "A2")]
    )
    assert out == [
        Message("user", "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST]", masked=True),
        Message("assistant", "A1 "),  # Meta's reference: a space before the EOS the tokenizer adds
        Message("user", "[INST] U2 [/INST]", masked=False),
        Message("assistant", "A2 "),
    ]
    # no system message: user turns are only wrapped; a trailing system message is kept as it was
    trailing = Message("system", "late", masked=False)
    assert llama2_chat_template([Message("user", "hi"), trailing]) == [Message("user", "[INST] hi [/INST]"), trailing]
