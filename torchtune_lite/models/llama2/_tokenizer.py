"""The Llama-2 SentencePiece tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import sentencepiece as spm

from torchtune_lite.data.messages import Message


class Llama2Tokenizer:
    """Wraps a SentencePiece `.model`. Token ids are the model's; `pad_id` is 0 when the model has none
    (Llama's has none, and 0 is its `<unk>`, which training never predicts because padding is masked)."""

    def __init__(self, path: str, max_seq_len: Optional[int] = None) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"tokenizer.path {path} does not exist: point it at a SentencePiece tokenizer.model")
        self.path = str(path)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(self.path)
        except (OSError, RuntimeError) as err:
            raise ValueError(f"tokenizer.path {path} is not a SentencePiece model ({err}): use the checkpoint's tokenizer.model") from None
        self.max_seq_len = max_seq_len

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

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        ids = self.sp.EncodeAsIds(text)
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.DecodeIds(list(ids))

    def tokenize_messages(self, messages: Sequence[Message], *, truncate: bool = True) -> tuple[list[int], list[bool]]:
        """Concatenates messages: BOS before the first, EOS after each assistant turn. Returns tokens and a
        mask (True = not trained on) taken from each message's `masked`; cut to `max_seq_len` if `truncate`."""
        tokens: list[int] = []
        mask: list[bool] = []
        for i, message in enumerate(messages):
            ids = self.encode(message.content, add_bos=i == 0, add_eos=message.role == "assistant")
            tokens += ids
            mask += [message.masked] * len(ids)
        if truncate and self.max_seq_len is not None and len(tokens) > self.max_seq_len:
            tokens, mask = tokens[: self.max_seq_len], mask[: self.max_seq_len]
        return tokens, mask


def llama2_tokenizer(path: str, max_seq_len: Optional[int] = None) -> Llama2Tokenizer:
    return Llama2Tokenizer(path, max_seq_len=max_seq_len)
