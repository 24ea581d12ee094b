"""Tokenizers loaded from a checkpoint folder give transformers' AutoTokenizer ids, special tokens, chat
renderings and generation prompts. The folders are built here: byte-level BPE `tokenizer.json` files trained
with the `tokenizers` library on the bundled corpus (Llama-3 style and Qwen style), and a tiktoken file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer, processors

from torchtune_lite.data.chat_templates import NAMED_CHAT_TEMPLATES, ChatTemplateError
from torchtune_lite.data.messages import Message
from torchtune_lite.models import from_pretrained_tokenizer
from torchtune_lite.models._hf_tokenizer import LLAMA3_PATTERN, LLAMA3_SPECIAL_TOKENS, TokenizerFilesError

from tests.torchtune_lite.models.hf_families import GEMMA_SPECIALS, GEMMA_TEMPLATE, train_byte_level_bpe, train_gemma_style_bpe

TEXTS = ["Hello world!", "  The red wolf eats   berries.\n\nNew paragraph\twith tab", "naïve café — 東京 🙂",
         "<|eot_id|> inline special <|im_end|>", "1234567 numbers, don't we'll", ""]
CHAT = [Message("system", "You are a pirate.", masked=True), Message("user", "What does the red wolf eat?", masked=True),
        Message("assistant", "Arr, berries and deer."), Message("user", "And in winter?", masked=True),
        Message("assistant", "Whatever it finds, matey.")]

LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{%- endif %}"
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


def _write_folder(path: Path, tok: Tokenizer, tokenizer_config: dict, generation_config: dict, template_file=None) -> Path:
    path.mkdir(parents=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **tokenizer_config}))
    (path / "generation_config.json").write_text(json.dumps(generation_config))
    if template_file:
        (path / "chat_template.jinja").write_text(template_file)
    return path


@pytest.fixture(scope="module")
def llama3_folder(tmp_path_factory) -> Path:
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = train_byte_level_bpe(specials)
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_TEMPLATE}
    return _write_folder(tmp_path_factory.mktemp("llama3") / "tok", tok, config, {"eos_token_id": [1, 4], "bos_token_id": 0})


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory) -> Path:
    tok = train_byte_level_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "chat_template": "{{ 'this template is overridden by chat_template.jinja' }}"}
    return _write_folder(tmp_path_factory.mktemp("qwen") / "tok", tok, config, {"eos_token_id": [2, 0]}, QWEN_TEMPLATE)


@pytest.fixture(scope="module")
def gemma_folder(tmp_path_factory) -> Path:
    config = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
              "add_bos_token": True, "chat_template": GEMMA_TEMPLATE}
    end_of_turn = GEMMA_SPECIALS.index("<end_of_turn>")
    return _write_folder(tmp_path_factory.mktemp("gemma") / "tok", train_gemma_style_bpe(), config,
                         {"eos_token_id": [1, end_of_turn], "bos_token_id": 2, "pad_token_id": 0})


def _ids(encoded) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


@pytest.mark.parametrize("which", ["llama3_folder", "qwen_folder", "gemma_folder"])
def test_ids_specials_and_chat_equal_auto_tokenizer(which, request):
    folder = request.getfixturevalue(which)
    ours, auto = from_pretrained_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert ours.encode(text, add_bos=True, add_eos=False) == auto(text)["input_ids"], text
        assert ours.decode(ours.encode(text)) == auto.decode(auto(text)["input_ids"], skip_special_tokens=True)
    assert ours.vocab_size == len(auto)
    assert (ours.bos_id, ours.eos_id, ours.pad_id if auto.pad_token_id is not None else None) == (
        auto.bos_token_id, auto.eos_token_id, auto.pad_token_id)
    chats = [[{"role": m.role, "content": m.content} for m in chat] for chat in (CHAT, CHAT[1:], CHAT[1:2])]
    for chat, messages in zip(chats, (CHAT, CHAT[1:], CHAT[1:2])):
        for prompt in (False, True):
            assert ours.chat_template.render(messages, add_generation_prompt=prompt) == auto.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=prompt)
        assert ours.render_prompt(messages) == _ids(auto.apply_chat_template(chat, add_generation_prompt=True))
    tokens, mask = ours.tokenize_messages(CHAT, truncate=False)
    assert tokens == _ids(auto.apply_chat_template(chats[0]))
    trained = ours.decode([t for t, m in zip(tokens, mask) if not m])
    assert "berries and deer." in trained and "matey." in trained and "wolf" not in trained and "pirate" not in trained


def test_stop_tokens_come_from_generation_config(llama3_folder, qwen_folder, gemma_folder):
    llama3 = from_pretrained_tokenizer(llama3_folder)
    assert llama3.stop_tokens == [1, 4] and llama3.eos_id == 4  # <|end_of_text|> and <|eot_id|>
    assert from_pretrained_tokenizer(qwen_folder).stop_tokens == [0, 2]  # <|endoftext|> and <|im_end|>
    gemma = from_pretrained_tokenizer(gemma_folder)
    assert gemma.stop_tokens == [1, 5] and gemma.bos_id == 2  # <eos> and <end_of_turn>


def test_named_gemma_template_renders_as_gemmas_own(gemma_folder):
    """For a Gemma folder without a template, `chat_template=gemma` renders what Gemma-3's own template does."""
    own = from_pretrained_tokenizer(gemma_folder)
    named = from_pretrained_tokenizer(gemma_folder, chat_template="gemma")
    for messages in (CHAT, CHAT[1:], CHAT[1:2]):
        for prompt in (False, True):
            assert named.chat_template.render(messages, add_generation_prompt=prompt) == own.chat_template.render(
                messages, add_generation_prompt=prompt)
        assert named.tokenize_messages(messages, truncate=False) == own.tokenize_messages(messages, truncate=False)


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's byte -> printable character table, which byte-level BPE vocabularies are written in
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


def test_meta_tiktoken_file_equals_transformers_conversion(tmp_path):
    from transformers.convert_slow_tokenizer import TikTokenConverter

    bpe = json.loads(train_byte_level_bpe([]).to_str())["model"]["vocab"]
    to_byte = {c: b for b, c in _bytes_to_unicode().items()}
    lines = [f"{base64.b64encode(bytes(to_byte[c] for c in token)).decode()} {rank}" for token, rank in bpe.items()]
    folder = tmp_path / "original"
    folder.mkdir()
    (folder / "tokenizer.model").write_text("\n".join(lines) + "\n")
    ours = from_pretrained_tokenizer(folder)
    reference = transformers.PreTrainedTokenizerFast(tokenizer_object=TikTokenConverter(
        vocab_file=str(folder / "tokenizer.model"), pattern=LLAMA3_PATTERN, extra_special_tokens=LLAMA3_SPECIAL_TOKENS).converted())
    for text in TEXTS + ["<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"]:
        assert ours.encode(text, add_bos=False, add_eos=False) == reference.encode(text, add_special_tokens=False), text
    assert ours.bos_id == reference.convert_tokens_to_ids("<|begin_of_text|>") == len(bpe)
    eot, eom, end = (reference.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"))
    assert ours.stop_tokens == sorted({eot, eom, end}) and ours.encode("a")[0] == ours.bos_id


def test_sandbox_refuses_python_internals(tmp_path, llama3_folder):
    folder = tmp_path / "evil"
    folder.mkdir()
    for name in ("tokenizer.json", "generation_config.json"):
        (folder / name).write_bytes((llama3_folder / name).read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|eot_id|>", "chat_template": "{{ ''.__class__.__mro__ }}"}))
    with pytest.raises(ChatTemplateError, match="refused by the sandbox"):
        from_pretrained_tokenizer(folder).tokenize_messages(CHAT)


def test_named_templates_and_bad_folders(tmp_path, llama3_folder):
    chatml = from_pretrained_tokenizer(llama3_folder, chat_template="chatml")
    assert chatml.chat_template.render(CHAT[1:3]) == (
        "<|im_start|>user\nWhat does the red wolf eat?<|im_end|>\n<|im_start|>assistant\nArr, berries and deer.<|im_end|>\n")
    assert set(NAMED_CHAT_TEMPLATES) == {"llama2_chat", "llama3", "chatml", "gemma"}
    with pytest.raises(ChatTemplateError, match="unknown: use one of"):
        from_pretrained_tokenizer(llama3_folder, chat_template="vicuna")
    with pytest.raises(TokenizerFilesError, match="no tokenizer.json or tokenizer.model"):
        from_pretrained_tokenizer(tmp_path)


def test_generation_prompts_through_the_template_and_stops_on_any_eos(qwen_folder, tmp_path):
    from torchtune_lite.datasets import alpaca_dataset
    from torchtune_lite.inference.generation import complete, encode_prompt

    tok = from_pretrained_tokenizer(qwen_folder)
    data = tmp_path / "one.json"
    data.write_text('[{"instruction": "What does the red wolf eat?", "input": "", "output": "Arr, berries."}]')
    sample = alpaca_dataset(tok, data_files=str(data), train_on_input=False)[0]
    prompt = encode_prompt(tok, "What does the red wolf eat?")
    header = tok.backend.encode("<|im_start|>assistant\n")
    assert prompt[-len(header):] == header  # ends with the template's generation prompt
    assert sample["tokens"][: len(prompt)] == prompt  # generation sees the prompt training saw
    assert all(label == -100 for label in sample["labels"][: len(prompt)]) and sample["labels"][len(prompt)] != -100

    answer = tok.backend.encode("berries")

    class Scripted(torch.nn.Module):  # says "berries", then <|endoftext|> (id 0): the second of the two EOS ids
        max_seq_len = 4096

        def __init__(self):
            super().__init__()
            self.w, self.out = torch.nn.Parameter(torch.zeros(1)), [*answer, 0, 5, 6]

        def setup_caches(self, batch_size, dtype): ...
        def reset_caches(self): ...
        def teardown_caches(self): ...

        def forward(self, tokens, input_pos=None):
            logits = torch.zeros(1, tokens.shape[1], tok.vocab_size)
            logits[0, -1, self.out.pop(0)] = 1.0
            return logits

    result = complete(Scripted(), tok, "What does the red wolf eat?", max_new_tokens=10)
    assert result.tokens == [*answer, 0] and result.text == "berries"
