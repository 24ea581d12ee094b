"""Messages: the common form every data set is turned into before tokenization."""

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    masked: bool = False  # True: the tokens are context, not trained on
