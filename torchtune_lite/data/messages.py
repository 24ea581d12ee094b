"""Messages: the common form every data set is turned into before tokenization."""

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    masked: bool = False  # True: the tokens are context, not trained on

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Message role {self.role!r} is not one of {ROLES}: map it to one of them")
        if not isinstance(self.content, str):
            raise ValueError(f"Message content must be text, got {type(self.content).__name__}: convert it with str()")
