"""Rebuilds the bundled demo data in torchtune_lite/assets/tiny/ (deterministic; a few seconds).

    python scripts/make_tiny_assets.py

- corpus.txt: simple English about a small made-up world of creatures (what each eats, where it lives,
  its size, its friend, its habit), in many sentence forms and short stories: the pretraining text of
  the tiny base model (scripts/make_tiny_base.py).
- tokenizer.model: a 1024-piece SentencePiece BPE model trained on that text (ids like Llama's:
  unk 0, bos 1, eos 2, no pad).
- instruct_train.json / instruct_val.json: Alpaca-format questions about the same world, answered in
  pirate speak, a style the base never saw. Validation holds out (creature, question) pairs.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import sentencepiece as spm

OUT = Path(__file__).resolve().parents[1] / "torchtune_lite" / "assets" / "tiny"

COLORS = ["red", "blue", "green", "yellow", "white", "black", "brown", "grey", "orange", "purple", "pink", "golden"]
ANIMALS = [
    "fox", "owl", "bear", "rabbit", "frog", "deer", "wolf", "duck", "goat", "mouse", "cat", "dog", "horse",
    "crow", "otter", "badger", "turtle", "lizard", "pig", "sheep", "hen", "swan", "bee", "snail", "beaver",
    "hedgehog", "squirrel", "moose", "crab", "seal",
]
HOMES = ["forest", "river", "hill", "cave", "meadow", "barn", "lake", "desert", "garden", "mountain", "marsh", "village"]
FOODS = ["berries", "fish", "seeds", "honey", "grass", "apples", "nuts", "carrots", "bread", "cheese", "mushrooms", "plums"]
SIZES = ["tiny", "small", "big", "huge"]
HABITS = [
    ("sings at night", "sings"), ("sleeps all day", "sleeps"), ("runs very fast", "runs"), ("swims in the cold water", "swims"),
    ("climbs tall trees", "climbs"), ("digs deep holes", "digs"), ("tells long stories", "talks"), ("dances in the rain", "dances"),
]
STORY_OPENINGS = ["One morning", "One evening", "Long ago", "On a sunny day", "On a rainy day", "In the winter", "In the spring", "Once upon a time"]


def make_world(rng: random.Random, n: int = 72) -> list[dict]:
    pairs = [(c, a) for c in COLORS for a in ANIMALS]
    rng.shuffle(pairs)
    world = []
    for color, animal in pairs[:n]:
        habit, verb = rng.choice(HABITS)
        world.append({
            "name": f"{color} {animal}", "home": rng.choice(HOMES), "food": rng.choice(FOODS),
            "size": rng.choice(SIZES), "habit": habit, "verb": verb,
        })
    for creature in world:
        creature["friend"] = rng.choice([c for c in world if c is not creature])["name"]
    return world


def fact_sentences(c: dict) -> list[str]:
    n = c["name"]
    return [
        f"The {n} lives in the {c['home']}.", f"The {n} eats {c['food']}.", f"The {n} is {c['size']}.",
        f"The {n} is friends with the {c['friend']}.", f"The {n} {c['habit']}.",
        f"In the {c['home']} lives the {n}.", f"The food of the {n} is {c['food']}.",
        f"Every day the {n} eats {c['food']} in the {c['home']}.", f"The {c['size']} {n} likes {c['food']} very much.",
        f"If you go to the {c['home']}, you can see the {n}.", f"The best friend of the {n} is the {c['friend']}.",
        f"Everyone knows that the {n} {c['habit']}.", f"The {n} and the {c['friend']} play together.",
        f"Nobody is surprised when the {n} {c['habit']}.", f"The home of the {n} is the {c['home']}.",
    ]


def story(c: dict, friend: dict, rng: random.Random) -> str:
    n, f = c["name"], friend["name"]
    return " ".join([
        f"{rng.choice(STORY_OPENINGS)}, the {n} left the {c['home']} to visit the {f}.",
        f"The {f} lives in the {friend['home']} and eats {friend['food']}.",
        f"The {n} brought some {c['food']}, because the {n} eats {c['food']}.",
        f"They talked for a long time, and then the {n} went back to the {c['home']}.",
        f"That night the {n} {c['habit']}, as always.",
    ])


def make_corpus(world: list[dict], rng: random.Random, paragraphs: int = 5000) -> str:
    by_name = {c["name"]: c for c in world}
    out = []
    for _ in range(paragraphs):
        c = rng.choice(world)
        if rng.random() < 0.3:
            out.append(story(c, by_name[c["friend"]], rng))
        else:
            sentences = fact_sentences(c)
            rng.shuffle(sentences)
            out.append(" ".join(sentences[: rng.randint(3, 6)]))
    return "\n\n".join(out) + "\n"


QUESTIONS = {
    "food": (["What does the {n} eat?", "What food does the {n} like?", "Tell me what the {n} eats."],
             "Arr! The {n} be eatin' {food}, matey!"),
    "home": (["Where does the {n} live?", "Where is the home of the {n}?", "Tell me where the {n} lives."],
             "Arr! The {n} be livin' in the {home}, matey!"),
    "size": (["How big is the {n}?", "What size is the {n}?", "Is the {n} big or small?"],
             "Arr! The {n} be {size}, matey!"),
    "friend": (["Who is the friend of the {n}?", "Who does the {n} play with?", "Tell me about the friend of the {n}."],
               "Arr! The {n} be friends with the {friend}, matey!"),
    "habit": (["What does the {n} do?", "What is special about the {n}?", "Tell me a habit of the {n}."],
              "Arr! The {n} {habit}, matey! Yo ho!"),
}


def make_instructions(world: list[dict], rng: random.Random) -> tuple[list[dict], list[dict]]:
    train, val = [], []
    for c in world:
        for topic, (questions, answer) in QUESTIONS.items():
            rows = [{"instruction": q.format(n=c["name"]), "input": "", "output": answer.format(n=c["name"], **c)} for q in questions]
            (val if rng.random() < 0.08 else train).extend(rows)
    rng.shuffle(train)
    return train, val


def train_tokenizer(texts: list[str], path: Path, vocab_size: int = 1024) -> None:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=2, minloglevel=2,
    )
    path.write_bytes(model.getvalue())


def main() -> None:
    rng = random.Random(1234)
    world = make_world(rng)
    corpus = make_corpus(world, rng)
    train, val = make_instructions(world, rng)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "corpus.txt").write_text(corpus)
    (OUT / "instruct_train.json").write_text(json.dumps(train, indent=1) + "\n")
    (OUT / "instruct_val.json").write_text(json.dumps(val, indent=1) + "\n")
    (OUT / "world.json").write_text(json.dumps(world, indent=1) + "\n")
    # The tokenizer also sees the instruction data and the Alpaca template, so prompts tokenize compactly.
    from torchtune_lite.data import format_alpaca_prompt

    texts = corpus.split("\n\n") + [format_alpaca_prompt(r["instruction"]) + r["output"] for r in train]
    train_tokenizer(texts, OUT / "tokenizer.model")
    print(f"wrote {OUT}: corpus {len(corpus) / 1e6:.2f} MB, {len(train)} train / {len(val)} val instructions")


if __name__ == "__main__":
    main()
