"""Builds the bundled preference pairs in torchtune_lite/assets/tiny/ from the instruction data (deterministic).

    python scripts/make_tiny_preferences.py

Each pair asks one of the instruction questions; the chosen answer is the pirate-speak answer the SFT
data teaches, the rejected one the same fact in the plain English of the base's pretraining text. The
base prefers the plain answer, so a preference-tuning run has something to learn: its reward accuracy
starts low and rises as the adapters pick up the style.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "torchtune_lite" / "assets" / "tiny"
_PLAIN = [(" be eatin' ", " eats "), (" be livin' in ", " lives in "), (" be friends with ", " is friends with "), (" be ", " is ")]


def plain_answer(pirate: str) -> str:
    """'Arr! The red fox be eatin' fish, matey!' -> 'The red fox eats fish.'"""
    text = re.sub(r"^Arr! ", "", pirate)
    text = re.sub(r", matey!( Yo ho!)?$", ".", text)
    for old, new in _PLAIN:
        if old in text:
            return text.replace(old, new, 1)
    return text


def main() -> None:
    for split in ("train", "val"):
        rows = json.loads((ASSETS / f"instruct_{split}.json").read_text())
        pairs = [{"prompt": r["instruction"], "chosen": r["output"], "rejected": plain_answer(r["output"])} for r in rows]
        assert all(p["chosen"] != p["rejected"] and "Arr" not in p["rejected"] for p in pairs)
        (ASSETS / f"preference_{split}.json").write_text(json.dumps(pairs, indent=1) + "\n")
        print(f"preference_{split}.json: {len(pairs)} pairs")


if __name__ == "__main__":
    main()
