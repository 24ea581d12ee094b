"""The prompt layout a run trained with, saved beside its checkpoint so generation and evaluation use it.

It goes into the checkpoint's `tokenizer_config.json` (the top folder and `adapter/`): `chat_template` (the
Jinja text, which transformers reads too), `prompt_template` (a named template of our SentencePiece
tokenizer, `llama2_chat`) and `prompt_format` (`alpaca`, `chat` or `text`: how the data set built the
user turn). `tune run generate` finds it in the folder it loads and applies it to its tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from torchtune_lite.data.chat_templates import NAMED_CHAT_TEMPLATES, ChatTemplate
from torchtune_lite.data.prompt_templates import PROMPT_TEMPLATES

TOKENIZER_CONFIG = "tokenizer_config.json"
PROMPT_FORMATS = ("alpaca", "chat", "text")


def template_config(tokenizer, prompt_format: Optional[str]) -> dict[str, Any]:
    """What `tokenizer` rendered training samples with, as tokenizer_config.json entries."""
    config: dict[str, Any] = {}
    if prompt_format is not None:
        config["prompt_format"] = prompt_format
    chat = getattr(tokenizer, "chat_template", None)
    prompt_template = getattr(tokenizer, "prompt_template", None)
    name = next((n for n, fn in PROMPT_TEMPLATES.items() if fn is prompt_template), None)
    if name is not None:
        config["prompt_template"] = name
    if chat is not None:
        config["chat_template"] = chat.text
    elif name in NAMED_CHAT_TEMPLATES:  # the same layout in Jinja, for transformers' apply_chat_template
        config["chat_template"] = NAMED_CHAT_TEMPLATES[name]
    return config


def write_template_config(folder: Path, config: dict[str, Any]) -> str:
    """Merges `config` into `folder/tokenizer_config.json` (copied from the base, or new); returns its name."""
    path = folder / TOKENIZER_CONFIG
    existing = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**existing, **config}, indent=2, ensure_ascii=False))
    return TOKENIZER_CONFIG


def find_template_config(*folders: Union[str, Path, None]) -> Optional[tuple[Path, dict[str, Any]]]:
    """The first of `folders` whose tokenizer_config.json says what a run trained with (`prompt_format`)."""
    for folder in folders:
        if folder is None:
            continue
        path = Path(folder).expanduser() / TOKENIZER_CONFIG
        if path.is_file():
            config = json.loads(path.read_text())
            if config.get("prompt_format") in PROMPT_FORMATS:
                return path, config
    return None


def apply_template_config(tokenizer, config: dict[str, Any], source: str) -> None:
    """Gives `tokenizer` the saved layout: a named prompt template for SentencePiece, else the Jinja text."""
    name = config.get("prompt_template")
    if name in PROMPT_TEMPLATES and hasattr(tokenizer, "prompt_template"):
        tokenizer.prompt_template = PROMPT_TEMPLATES[name]
        if hasattr(tokenizer, "chat_template"):
            tokenizer.chat_template = None
    elif config.get("chat_template") and hasattr(tokenizer, "chat_template"):
        tokenizer.chat_template = ChatTemplate(config["chat_template"], source=source,
                                               special_tokens=getattr(tokenizer, "special_tokens", None))


def use_saved_template(tokenizer, folders: list[Union[str, Path, None]], instruct_template: bool) -> bool:
    """Applies the layout saved in the first of `folders` that has one (printing where it came from) and
    returns whether prompts are wrapped in the Alpaca template (as the run's data set did); without a saved
    layout, `tokenizer` is left alone and `instruct_template` is returned."""
    found = find_template_config(*folders)
    if found is None:
        return instruct_template
    path, config = found
    apply_template_config(tokenizer, config, source=str(path))
    layout = config.get("prompt_template") or ("its chat template" if config.get("chat_template") else None)
    if layout:  # a plain run's prompts are what generation builds anyway
        print(f"Prompts laid out as the run trained them ({config['prompt_format']}, {layout}; from {path})", flush=True)
    return config["prompt_format"] == "alpaca"
