"""The tokenizer a checkpoint folder holds: `tokenizer.json` (HF `tokenizers`), Meta's Llama-3 `tokenizer.model`
(tiktoken), or a SentencePiece `tokenizer.model`, with the special tokens, stop tokens and chat template
the folder declares (`tokenizer_config.json`, `generation_config.json`, `chat_template.jinja`)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from torchtune_lite.data.chat_templates import NAMED_CHAT_TEMPLATES, ChatTemplate, ChatTemplateError, named_chat_template
from torchtune_lite.data.messages import Message
from torchtune_lite.data.prompt_templates import PromptTemplate
from torchtune_lite.data.truncation import truncate_sample


class TokenizerFilesError(ValueError):
    """The folder's tokenizer files are missing or unreadable."""


# Meta's Llama-3 tiktoken split pattern and special tokens (llama-models' tokenizer.py), appended after
# the file's ranks: 256 of them, the unnamed ones reserved.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_NAMED = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                 "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
                 "<|eot_id|>", "<|python_tag|>"]
LLAMA3_SPECIAL_TOKENS = _LLAMA3_NAMED + [f"<|reserved_special_token_{i}|>" for i in range(2, 2 + 256 - len(_LLAMA3_NAMED))]


class _TokenizersBackend:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust library raises a bare Exception
            raise TokenizerFilesError(f"{path} is not a tokenizers file ({str(err).splitlines()[0]}): download it again") from None

    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> Optional[int]:
        return self.tok.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_with_starts(self, text: str) -> tuple[list[int], list[int]]:
        enc = self.tok.encode(text, add_special_tokens=False)
        return enc.ids, [start for start, _ in enc.offsets]

    def adds_bos_itself(self, bos_id: Optional[int]) -> bool:
        return bos_id is not None and self.tok.encode("a", add_special_tokens=True).ids[:1] == [bos_id]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)


class _TiktokenBackend:
    def __init__(self, path: Path) -> None:
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        ranks = load_tiktoken_bpe(str(path))
        specials = {t: len(ranks) + i for i, t in enumerate(LLAMA3_SPECIAL_TOKENS)}
        self.enc = tiktoken.Encoding(name=path.name, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
        self.specials = specials

    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def token_id(self, token: str) -> Optional[int]:
        return self.specials.get(token)

    def encode(self, text: str) -> list[int]:
        return self.enc.encode(text, allowed_special="all")

    def encode_with_starts(self, text: str) -> tuple[list[int], list[int]]:
        ids = self.encode(text)
        return ids, self.enc.decode_with_offsets(ids)[1]

    def adds_bos_itself(self, bos_id: Optional[int]) -> bool:
        return bos_id is not None  # Meta's Llama-3 tokenizer starts every text with <|begin_of_text|>

    def decode(self, ids: Sequence[int]) -> str:
        return self.enc.decode([i for i in ids if i not in self.specials.values()])


def _is_tiktoken_file(path: Path) -> bool:
    """Meta's tiktoken files are text lines `<base64 token> <rank>`; SentencePiece's are protobuf."""
    with path.open("rb") as f:
        first = f.readline(4096).split()
    try:
        return len(first) == 2 and bool(base64.b64decode(first[0], validate=True)) and first[1].isdigit()
    except ValueError:
        return False


def _token_text(value: Any) -> Optional[str]:
    return value.get("content") if isinstance(value, dict) else value


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TokenizerFilesError(f"{path} is not valid JSON ({err}): download it again") from None


class HFTokenizer:
    """Encodes like `transformers.AutoTokenizer` on the same folder; renders chats with the model's template.

    Args:
        backend: the loaded vocabulary (`tokenizers` or `tiktoken`).
        special_tokens: bos_token, eos_token, pad_token, ... as the folder names them (passed to templates).
        stop_tokens: every id that ends a generation (EOS plus `generation_config.json`'s eos_token_id list).
        chat_template: renders `tokenize_messages`; None encodes messages one after another (BOS first,
            EOS after assistant turns), after `prompt_template` if one is given.
    """

    def __init__(
        self,
        backend: Union[_TokenizersBackend, _TiktokenBackend],
        *,
        special_tokens: dict[str, str],
        stop_tokens: Sequence[int],
        max_seq_len: Optional[int] = None,
        chat_template: Optional[ChatTemplate] = None,
        prompt_template: Optional[PromptTemplate] = None,
        source: str = "tokenizer",
    ) -> None:
        self.backend = backend
        self.source = source
        self.special_tokens = special_tokens
        self.bos_id = self._id(special_tokens.get("bos_token"))
        eos_id = self._id(special_tokens.get("eos_token"))
        self.eos_id = eos_id if eos_id is not None else (list(stop_tokens) or [None])[0]
        if self.eos_id is None:
            raise TokenizerFilesError(f"{source}: no eos_token: add eos_token to tokenizer_config.json")
        pad_id = self._id(special_tokens.get("pad_token"))
        self.pad_id = pad_id if pad_id is not None else self.eos_id
        self.stop_tokens = sorted({self.eos_id, *stop_tokens})
        self.add_bos = backend.adds_bos_itself(self.bos_id)
        self.max_seq_len = max_seq_len
        self.chat_template = chat_template
        self.prompt_template = prompt_template

    def _id(self, token: Optional[str]) -> Optional[int]:
        return None if token is None else self.backend.token_id(token)

    @property
    def vocab_size(self) -> int:
        return self.backend.vocab_size()

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """BOS only if the tokenizer itself adds one (Llama-3, Mistral: yes; Qwen: no BOS at all). Never truncates."""
        bos = [self.bos_id] if add_bos and self.add_bos else []
        return bos + self.backend.encode(text) + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(ids)

    def check_can_render_chats(self) -> None:
        """Chat data needs a layout: the folder's template, a named one, or a prompt template."""
        if self.chat_template is None and self.prompt_template is None:
            raise ChatTemplateError(
                f"{self.source} has no chat template and none is named: set tokenizer.chat_template to one of "
                f"{sorted(NAMED_CHAT_TEMPLATES)}"
            )

    def render_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Ids of `messages` followed by the template's generation prompt, for generation."""
        if self.chat_template is None:
            raise ChatTemplateError(f"{self.source} has no chat template: set tokenizer.chat_template to one of the named templates")
        return self.backend.encode(self.chat_template.render(messages, add_generation_prompt=True))

    def tokenize_messages(self, messages: Sequence[Message], *, truncate: bool = True) -> tuple[list[int], list[bool]]:
        """Tokens and mask (True = not trained on). With a chat template the whole chat is rendered once and
        tokenized once (as `apply_chat_template` does); each token takes the mask of the message its text
        came from, and a turn's header (everything before the message's own rendering ends) is masked."""
        if self.prompt_template is not None:
            messages = self.prompt_template(messages)
        if self.chat_template is None:
            tokens, mask = [], []
            for i, message in enumerate(messages):
                ids = self.encode(message.content, add_bos=i == 0, add_eos=message.role == "assistant")
                tokens += ids
                mask += [message.masked] * len(ids)
        else:
            tokens, mask = self._render_with_mask(messages)
        return truncate_sample(tokens, mask, self.max_seq_len, self.eos_id) if truncate else (tokens, mask)

    def _render_with_mask(self, messages: Sequence[Message]) -> tuple[list[int], list[bool]]:
        text = self.chat_template.render(messages)
        # Message i's text ends where the rendering of messages[:i+1] ends; a trained (unmasked) message's
        # own span starts after the generation prompt that precedes it, so role headers stay masked.
        spans = []
        for i, message in enumerate(messages):
            end = len(self.chat_template.render(messages[: i + 1]))
            start = len(self.chat_template.render(messages[:i], add_generation_prompt=True)) if i else 0
            if not text.startswith(self.chat_template.render(messages[: i + 1])):
                raise ChatTemplateError(
                    f"{self.chat_template.source}: rendering the first {i + 1} messages is not a prefix of the whole "
                    "chat, so turns cannot be masked: use a named template (tokenizer.chat_template=chatml, ...)"
                )
            if not message.masked:
                spans.append((start, end))
        ids, starts = self.backend.encode_with_starts(text)
        mask = [not any(s <= pos < e for s, e in spans) for pos in starts]
        return ids, mask

    def truncate(self, tokens: list[int], mask: list[bool]) -> tuple[list[int], list[bool]]:
        return truncate_sample(tokens, mask, self.max_seq_len, self.eos_id)


def from_pretrained_tokenizer(
    checkpoint_dir: Union[str, Path],
    max_seq_len: Optional[int] = None,
    chat_template: Optional[str] = None,
    prompt_template: Union[PromptTemplate, str, None] = None,
):
    """The tokenizer of an HF checkpoint folder (or Meta's original Llama-3 folder), for configs.

    `tokenizer.json` is read with HF `tokenizers`; otherwise `tokenizer.model` with tiktoken (Meta's Llama-3
    format) or SentencePiece (Llama-2, returned as `Llama2Tokenizer`). `chat_template`: a named template
    (`llama2_chat`, `llama3`, `chatml`, `gemma`) used instead of the folder's own; by default the folder's
    (`tokenizer_config.json`'s `chat_template` or `chat_template.jinja`), if it has one.
    """
    folder = Path(checkpoint_dir).expanduser()
    if not folder.is_dir():
        raise TokenizerFilesError(f"tokenizer.checkpoint_dir {folder} does not exist: point it at the model's folder")
    config = _read_json(folder / "tokenizer_config.json")
    generation = _read_json(folder / "generation_config.json")
    if (folder / "tokenizer.json").is_file():
        backend: Union[_TokenizersBackend, _TiktokenBackend] = _TokenizersBackend(folder / "tokenizer.json")
        special = {k: _token_text(v) for k, v in config.items() if k.endswith("_token") and _token_text(v)}
    elif (folder / "tokenizer.model").is_file() and _is_tiktoken_file(folder / "tokenizer.model"):
        backend = _TiktokenBackend(folder / "tokenizer.model")
        special = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
        special.update({k: _token_text(v) for k, v in config.items() if k.endswith("_token") and _token_text(v)})
        if not generation:  # Meta's folders have no generation_config: its stop tokens, as llama-models stops
            generation = {"eos_token_id": [backend.token_id(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]}
    elif (folder / "tokenizer.model").is_file():
        from torchtune_lite.models.llama2._tokenizer import Llama2Tokenizer

        return Llama2Tokenizer(str(folder / "tokenizer.model"), max_seq_len=max_seq_len, prompt_template=prompt_template)
    else:
        found = sorted(p.name for p in folder.iterdir())
        raise TokenizerFilesError(
            f"{folder} has no tokenizer.json or tokenizer.model (found: {found}): download the model's tokenizer files"
        )
    eos_ids = generation.get("eos_token_id")
    stop_tokens = [i for i in (eos_ids if isinstance(eos_ids, list) else [eos_ids]) if isinstance(i, int)]
    template = _chat_template(folder, config, chat_template, special)
    if isinstance(prompt_template, str):
        from torchtune_lite.data.prompt_templates import PROMPT_TEMPLATES

        if prompt_template not in PROMPT_TEMPLATES:
            raise ValueError(f"tokenizer.prompt_template={prompt_template!r} is unknown: use one of {sorted(PROMPT_TEMPLATES)} or null")
        prompt_template = PROMPT_TEMPLATES[prompt_template]
    return HFTokenizer(backend, special_tokens=special, stop_tokens=stop_tokens, max_seq_len=max_seq_len,
                       chat_template=template, prompt_template=prompt_template, source=str(folder))


def _chat_template(folder: Path, config: dict, name: Optional[str], special: dict[str, str]) -> Optional[ChatTemplate]:
    if name is not None:
        return named_chat_template(name, special)
    # as transformers: a chat_template.jinja file takes priority over tokenizer_config.json's entry
    if (folder / "chat_template.jinja").is_file():
        return ChatTemplate((folder / "chat_template.jinja").read_text(), source=str(folder / "chat_template.jinja"),
                            special_tokens=special)
    own = config.get("chat_template")
    if isinstance(own, list):  # [{name, template}, ...]: the default one
        own = next((t["template"] for t in own if t.get("name") == "default"), None)
    if own:
        return ChatTemplate(own, source=str(folder / "tokenizer_config.json"), special_tokens=special)
    return None
