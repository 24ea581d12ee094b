"""Prompt templates. The Alpaca template is shared by training and generation so both see the same
prompt; the Llama-2-chat template rewrites messages before the tokenizer encodes them."""

from __future__ import annotations

from typing import Callable, Sequence

from torchtune_lite.data.messages import Message

# A template rewrites the contents of messages (it keeps their roles and masks): messages -> messages.
PromptTemplate = Callable[[Sequence[Message]], list[Message]]

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
    """The prompt part of an Alpaca sample (everything the model conditions on before the response).
    Call it at generation time too, so the model sees the prompt it was trained on."""
    if input:
        return _WITH_INPUT.format(instruction=instruction, input=input)
    return _WITHOUT_INPUT.format(instruction=instruction)


def llama2_chat_template(messages: Sequence[Message]) -> list[Message]:
    """Meta's Llama-2-chat layout: each user turn becomes `[INST] {user} [/INST]` and each answer
    `{answer} ` (Meta's reference ends it with a space before EOS); a system message is folded into the
    next user turn as `<<SYS>>\\n{system}\\n<</SYS>>\\n\\n` (it takes the user turn's mask). The tokenizer
    starts each exchange with BOS, as Meta's `chat_completion` encodes every (user, answer) pair alone."""
    out: list[Message] = []
    system = None
    for message in messages:
        if message.role == "system":
            system = message
        elif message.role == "user":
            content = message.content
            if system is not None:
                content = f"<<SYS>>\n{system.content}\n<</SYS>>\n\n{content}"
            out.append(Message("user", f"[INST] {content.strip()} [/INST]", masked=message.masked))
            system = None
        else:
            out.append(Message("assistant", f"{message.content.strip()} ", masked=message.masked))
    if system is not None:  # a trailing system message with no user turn after it stays as it was
        out.append(system)
    return out


llama2_chat_template.bos_per_exchange = True  # type: ignore[attr-defined]

PROMPT_TEMPLATES: dict[str, PromptTemplate] = {"llama2_chat": llama2_chat_template}
