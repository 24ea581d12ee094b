"""The Llama-2 SentencePiece tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import sentencepiece as spm

from torchtune_lite.data.messages import Message
from torchtune_lite.data.prompt_templates import PROMPT_TEMPLATES, PromptTemplate
from torchtune_lite.data.truncation import truncate_sample


class Llama2Tokenizer:
    """Wraps a SentencePiece `.model`. Token ids are the model's; `pad_id` is 0 when the model has none
    (Llama's has none, and 0 is its `<unk>`, which training never predicts because padding is masked).

    `prompt_template` (a function messages -> messages, or a name in `PROMPT_TEMPLATES` such as
    `"llama2_chat"`) rewrites messages in `tokenize_messages` before they are encoded.
    """

    def __init__(
        self, path: str, max_seq_len: Optional[int] = None, prompt_template: Union[PromptTemplate, str, None] = None
    ) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"tokenizer.path {path} does not exist: point it at a SentencePiece tokenizer.model")
        self.path = str(path)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(self.path)
        except (OSError, RuntimeError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(
                f"tokenizer.path {path} is not a SentencePiece model ({reason}): use the checkpoint's tokenizer.model"
            ) from None
        if max_seq_len is not None and max_seq_len < 2:
            raise ValueError(f"tokenizer.max_seq_len={max_seq_len} is too short: use at least 2 (or null for no limit)")
        self.max_seq_len = max_seq_len
        if isinstance(prompt_template, str):
            if prompt_template not in PROMPT_TEMPLATES:
                raise ValueError(
                    f"tokenizer.prompt_template={prompt_template!r} is unknown: use one of {sorted(PROMPT_TEMPLATES)} or null"
                )
            prompt_template = PROMPT_TEMPLATES[prompt_template]
        self.prompt_template = prompt_template

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    @property
    def pad_id(self) -> int:
        return max(self.sp.pad_id(), 0)

    @property
    def stop_tokens(self) -> list[int]:
        """Ids that end a generation."""
        return [self.eos_id]

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """Never truncates: `max_seq_len` applies to whole samples (`tokenize_messages`, `truncate`)."""
        ids = self.sp.EncodeAsIds(text)
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.DecodeIds(list(ids))

    def tokenize_messages(self, messages: Sequence[Message], *, truncate: bool = True) -> tuple[list[int], list[bool]]:
        """Concatenates messages (after the prompt template, if any): BOS before the first (and before every
        exchange if the template says `bos_per_exchange`), EOS after each assistant turn. Returns tokens and a mask (True = not trained on) taken from each message's
        `masked`; cut to `max_seq_len` by `self.truncate` if `truncate`."""
        if self.prompt_template is not None:
            messages = self.prompt_template(messages)
        tokens: list[int] = []
        mask: list[bool] = []
        # Llama-2 chat opens every exchange with BOS (Meta encodes each (user, answer) pair alone)
        bos_per_exchange = getattr(self.prompt_template, "bos_per_exchange", False)
        for i, message in enumerate(messages):
            starts_exchange = bos_per_exchange and message.role == "user" and i > 0 and messages[i - 1].role == "assistant"
            ids = self.encode(message.content, add_bos=i == 0 or starts_exchange, add_eos=message.role == "assistant")
            tokens += ids
            mask += [message.masked] * len(ids)
        if truncate:
            tokens, mask = self.truncate(tokens, mask)
        return tokens, mask

    def truncate(self, tokens: list[int], mask: list[bool]) -> tuple[list[int], list[bool]]:
        """Cuts a sample to `max_seq_len` (see `truncate_sample`: a final EOS stays, masked)."""
        return truncate_sample(tokens, mask, self.max_seq_len, self.eos_id)


def llama2_tokenizer(
    path: str, max_seq_len: Optional[int] = None, prompt_template: Union[PromptTemplate, str, None] = None
) -> Llama2Tokenizer:
    """The tokenizer of a Llama-2 checkpoint (`tokenizer.model`), for configs."""
    return Llama2Tokenizer(path, max_seq_len=max_seq_len, prompt_template=prompt_template)
