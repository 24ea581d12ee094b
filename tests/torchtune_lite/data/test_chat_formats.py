"""Multi-turn chats tokenized as the reference does it, token for token, with only the answers trained.

Llama-2: a SentencePiece model with Llama-2's normalizer (dummy prefix, whitespace kept), checked against
Meta's `chat_completion` encoding written out by hand and against transformers' `apply_chat_template`.
chatml (Qwen) and llama3: byte-level BPE folders, checked against `apply_chat_template` on the same template.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import sentencepiece as spm
import transformers
from tokenizers import processors

from torchtune_lite.data import Message
from torchtune_lite.data.chat_templates import NAMED_CHAT_TEMPLATES
from torchtune_lite.models import from_pretrained_tokenizer
from torchtune_lite.models.llama2._tokenizer import Llama2Tokenizer

from tests.torchtune_lite.models.hf_families import train_byte_level_bpe

CHAT = [("system", "You are a pirate."), ("user", "Hi there"), ("assistant", "I am fine"),
        ("user", "Where is the treasure?"), ("assistant", "Under the palm tree"), ("user", "Tell me a joke"),
        ("assistant", "Why did the cod cross the sea?")]


def _messages(train_on_input: bool = False) -> list[Message]:
    return [Message(role, text, masked=role != "assistant" and not train_on_input) for role, text in CHAT]


def _trained(tokens: list[int], mask: list[bool]) -> list[list[int]]:
    """The runs of trained tokens, one per answer."""
    runs, run = [], []
    for token, masked in zip(tokens, mask):
        if not masked:
            run.append(token)
        elif run:
            runs, run = runs + [run], []
    return runs + ([run] if run else [])


@pytest.fixture(scope="module")
def llama2_folder(tmp_path_factory) -> Path:
    text = ["You are a pirate. Hi there, how are you? I am fine. Where is the treasure? Under the palm tree.",
            "Tell me a joke. Why did the cod cross the sea? [INST] <<SYS>> <</SYS>> [/INST]"] * 50
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_writer=model, vocab_size=400, model_type="bpe", byte_fallback=True,
        add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2)
    folder = tmp_path_factory.mktemp("llama2")
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}))
    return folder


def test_llama2_multi_turn_matches_meta_and_transformers(llama2_folder):
    ours = Llama2Tokenizer(str(llama2_folder / "tokenizer.model"), prompt_template="llama2_chat")
    tokens, mask = ours.tokenize_messages(_messages())
    # Meta's llama/generation.py: each (user, answer) pair encoded alone, BOS ... EOS, answer ending in a space
    sp = spm.SentencePieceProcessor(model_file=str(llama2_folder / "tokenizer.model"))
    pairs = [("<<SYS>>\nYou are a pirate.\n<</SYS>>\n\nHi there", "I am fine"), ("Where is the treasure?", "Under the palm tree"),
             ("Tell me a joke", "Why did the cod cross the sea?")]
    meta = [t for user, answer in pairs for t in [1] + sp.encode(f"[INST] {user} [/INST] {answer} ") + [2]]
    assert tokens == meta
    auto = transformers.AutoTokenizer.from_pretrained(llama2_folder)
    chat = [{"role": role, "content": text} for role, text in CHAT]
    ids = auto.apply_chat_template(chat, chat_template=NAMED_CHAT_TEMPLATES["llama2_chat"], tokenize=True)
    assert tokens == list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    # every answer trains (with its trailing space and EOS); every [INST] block, BOS included, does not
    answers = [sp.encode(f"{answer} ") + [2] for _, answer in pairs]
    assert _trained(tokens, mask) == answers
    assert sum(not m for m in mask) == sum(map(len, answers))
    assert ours.tokenize_messages(_messages(train_on_input=True))[1] == [False] * len(tokens)


def _bpe_folder(tmp_path_factory, name: str, specials: list[str], config: dict) -> Path:
    tok = train_byte_level_bpe(specials)
    if name == "llama3":
        tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)])
    folder = tmp_path_factory.mktemp(name)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **config}))
    return folder


@pytest.mark.parametrize("template, specials, config, answer_end", [
    ("chatml", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
     "<|im_end|>"),
    ("llama3", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
     {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, "<|eot_id|>"),
])
def test_named_templates_multi_turn_match_transformers(tmp_path_factory, template, specials, config, answer_end):
    folder = _bpe_folder(tmp_path_factory, template, specials, config)
    ours = from_pretrained_tokenizer(folder, chat_template=template)
    tokens, mask = ours.tokenize_messages(_messages())
    auto = transformers.AutoTokenizer.from_pretrained(folder)
    chat = [{"role": role, "content": text} for role, text in CHAT]
    ids = auto.apply_chat_template(chat, chat_template=NAMED_CHAT_TEMPLATES[template], tokenize=True)
    assert tokens == list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    # each answer trains, up to and including the turn's end token; role headers and user turns do not
    runs = _trained(tokens, mask)
    assert [ours.decode(run).strip() for run in runs] == [text for role, text in CHAT if role == "assistant"]
    assert all(auto.convert_tokens_to_ids(answer_end) in run for run in runs)  # decode hides special tokens
