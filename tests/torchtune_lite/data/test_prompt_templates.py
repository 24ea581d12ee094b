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
