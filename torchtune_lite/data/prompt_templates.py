"""The Alpaca instruction template, shared by training and generation so both see the same prompt."""

_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
_WITHOUT_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def format_alpaca_prompt(instruction: str, input: str = "") -> str:
    """The prompt part of an Alpaca sample (everything the model conditions on before the response)."""
    if input:
        return _WITH_INPUT.format(instruction=instruction, input=input)
    return _WITHOUT_INPUT.format(instruction=instruction)
