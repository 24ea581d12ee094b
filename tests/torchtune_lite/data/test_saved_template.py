"""The prompt layout saved with a checkpoint: written into tokenizer_config.json, found and applied again,
so a prompt at generation is encoded exactly as the training samples' user turns were."""

from __future__ import annotations

import json
from pathlib import Path

from torchtune_lite.data import Message, format_alpaca_prompt
from torchtune_lite.data.chat_templates import NAMED_CHAT_TEMPLATES
from torchtune_lite.data.saved_template import template_config, use_saved_template, write_template_config
from torchtune_lite.inference.generation import encode_prompt
from torchtune_lite.models.llama2._tokenizer import Llama2Tokenizer

TOKENIZER = str(Path(__file__).resolve().parents[3] / "torchtune_lite" / "assets" / "tiny" / "tokenizer.model")


def test_llama2_chat_round_trip_encodes_prompts_as_training_did(tmp_path):
    trained = Llama2Tokenizer(TOKENIZER, prompt_template="llama2_chat")
    config = template_config(trained, "alpaca")
    assert config == {"prompt_format": "alpaca", "prompt_template": "llama2_chat", "chat_template": NAMED_CHAT_TEMPLATES["llama2_chat"]}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))  # copied from the base
    write_template_config(tmp_path, config)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {"bos_token": "<s>", **config}

    fresh = Llama2Tokenizer(TOKENIZER)  # what a generation config builds: no template
    assert use_saved_template(fresh, [None, tmp_path], instruct_template=False) is True
    prompt = encode_prompt(fresh, "Name a fish.", instruct_template=True)
    user_turn = trained.tokenize_messages([Message("user", format_alpaca_prompt("Name a fish."))], truncate=False)[0]
    assert prompt == user_turn and prompt[0] == fresh.bos_id
    assert fresh.decode(prompt).startswith("[INST] Below is an instruction") and fresh.decode(prompt).endswith("[/INST]")


def test_no_saved_layout_leaves_the_tokenizer_alone(tmp_path):
    tokenizer = Llama2Tokenizer(TOKENIZER)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))  # a base model's own file
    assert use_saved_template(tokenizer, [tmp_path], instruct_template=True) is True
    assert tokenizer.prompt_template is None
    assert encode_prompt(tokenizer, "hi", instruct_template=False) == tokenizer.encode("hi", add_eos=False)


def test_chat_format_turns_the_alpaca_wrapper_off(tmp_path):
    write_template_config(tmp_path, template_config(Llama2Tokenizer(TOKENIZER, prompt_template="llama2_chat"), "chat"))
    tokenizer = Llama2Tokenizer(TOKENIZER)
    assert use_saved_template(tokenizer, [tmp_path], instruct_template=True) is False
    assert tokenizer.decode(encode_prompt(tokenizer, "Hi", instruct_template=False)) == "[INST] Hi [/INST]"
