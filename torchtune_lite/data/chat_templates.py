"""Jinja chat templates, rendered as `transformers`' `apply_chat_template` renders them.

A downloaded folder's template is untrusted input, so it runs in jinja2's `ImmutableSandboxedEnvironment`
(as transformers does): attribute walks such as `''.__class__.__mro__` are refused by the sandbox, never
executed. Named templates cover folders that ship none.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Optional, Sequence

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from torchtune_lite.data.messages import Message

# The layouts of the model families, for folders whose tokenizer_config.json has no chat_template.
NAMED_CHAT_TEMPLATES: dict[str, str] = {
    "llama2_chat": (
        "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
        "{% set messages = messages[1:] %}{% else %}{% set system = none %}{% endif %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ bos_token }}[INST] "
        "{% if loop.first and system is not none %}<<SYS>>\n{{ system }}\n<</SYS>>\n\n{% endif %}"
        "{{ message['content'] | trim }} [/INST]"
        "{% elif message['role'] == 'assistant' %} {{ message['content'] | trim }} {{ eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for message in messages %}"
        "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
        "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "chatml": (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] + '\n\n' %}"
        "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
        "{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "<start_of_turn>{{ role }}\n{% if loop.first %}{{ system }}{% endif %}{{ message['content'] | trim }}"
        "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
}


class ChatTemplateError(ValueError):
    """A chat template that cannot be used: unknown name, bad syntax, or refused by the sandbox."""


class _Namespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore names, so a template cannot store its way to internals."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # jinja's signature trick: `self` may be a keyword
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} starts with an underscore")


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Optional[int] = None, separators=None, sort_keys: bool = False) -> str:
    # jinja's own tojson HTML-escapes; chat templates expect plain JSON
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt),
                       namespace=_Namespace)
    return env


class ChatTemplate:
    """A compiled template. `source` names where it came from, for error messages.

    `special_tokens` (bos_token, eos_token, ...) are passed to the template as transformers passes them.
    """

    def __init__(self, template: str, *, source: str, special_tokens: Optional[dict[str, str]] = None) -> None:
        self.source = source
        self.text = template  # saved with a checkpoint, so generation renders as training did
        self.special_tokens = dict(special_tokens or {})
        try:
            self._template = _environment().from_string(template)
        except jinja2.exceptions.TemplateSyntaxError as err:
            raise ChatTemplateError(f"{source}: chat template has a syntax error ({err.message}, line {err.lineno}): fix or replace it") from None

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
        """The conversation as text, as `apply_chat_template(..., tokenize=False)` gives it."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        try:
            return self._template.render(messages=chat, tools=None, documents=None,
                                         add_generation_prompt=add_generation_prompt, **self.special_tokens)
        except jinja2.exceptions.SecurityError as err:
            raise ChatTemplateError(
                f"{self.source}: the chat template was refused by the sandbox ({err}): it reaches for Python "
                "internals; use a trusted template (tokenizer.chat_template=<name> or your own file)"
            ) from None
        except jinja2.exceptions.TemplateError as err:
            raise ChatTemplateError(f"{self.source}: the chat template failed on this conversation ({err}): check the messages' roles") from None


def named_chat_template(name: str, special_tokens: Optional[dict[str, str]] = None) -> ChatTemplate:
    if name not in NAMED_CHAT_TEMPLATES:
        raise ChatTemplateError(f"chat_template={name!r} is unknown: use one of {sorted(NAMED_CHAT_TEMPLATES)} or a Jinja string")
    return ChatTemplate(NAMED_CHAT_TEMPLATES[name], source=f"chat_template {name!r}", special_tokens=special_tokens)
