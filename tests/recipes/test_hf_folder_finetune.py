"""`--config hf/qlora checkpointer.checkpoint_dir=FOLDER` on a tiny random Qwen2 folder with its own byte-level
BPE tokenizer.json, chat template and two EOS ids: the model comes from config.json, the data is rendered
through the chat template, the merged folder loads into transformers, and bad folders fail in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import transformers

from tests.recipes.conftest import ASSETS, read_losses, run_tune, tiny_overrides
from tests.torchtune_lite.models.hf_families import GEMMA_SPECIALS, GEMMA_TEMPLATE, train_byte_level_bpe, train_gemma_style_bpe

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def save_qwen_folder(path: Path) -> Path:
    """A tiny random Qwen2 folder as the Hub ships one: weights, config.json, tokenizer.json, chat template, two EOS ids."""
    tok = train_byte_level_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], vocab_size=512)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
         "chat_template": CHATML}))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    torch.manual_seed(0)
    config = transformers.Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      tie_word_embeddings=True)
    transformers.Qwen2ForCausalLM(config).save_pretrained(path)
    return path


def save_gemma_folder(path: Path, family: str = "gemma2") -> Path:
    """A tiny random Gemma-2 (or Gemma-3) folder as the Hub ships one: weights, config.json with sliding-window
    layers, a SentencePiece-style tokenizer.json that adds <bos>, Gemma's chat template, <eos> and <end_of_turn>."""
    train_gemma_style_bpe(vocab_size=512).save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GemmaTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
         "add_bos_token": True, "chat_template": GEMMA_TEMPLATE}))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, GEMMA_SPECIALS.index("<end_of_turn>")]}))
    torch.manual_seed(0)
    sizes = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, max_position_embeddings=256, sliding_window=16,
                 layer_types=["sliding_attention", "full_attention"])
    if family == "gemma2":
        transformers.Gemma2ForCausalLM(transformers.Gemma2Config(**sizes)).save_pretrained(path)
    else:
        transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**sizes)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory) -> Path:
    path = save_qwen_folder(tmp_path_factory.mktemp("qwen2_folder"))
    return path


def _args(folder: Path, out: Path, *extra: str) -> list[str]:
    settings = tiny_overrides(folder, out, shape={}, max_steps_per_epoch=6, **{
        "model.max_seq_len": 256, "model.lora_rank": 8, "model.lora_alpha": 16,
        "dataset.data_files": ASSETS / "instruct_train.json", "gradient_accumulation_steps": 1,
        "optimizer.fused": False})
    return ["run", "lora_finetune_single_device", "--config", "hf/qlora", *settings, *extra]


def test_any_hf_folder_trains_and_saves_a_loadable_folder(qwen_folder, tmp_path):
    run_tune(*_args(qwen_folder, tmp_path / "out"))
    losses = read_losses(tmp_path / "out")
    assert len(losses) == 6 and losses[-1] < losses[0]
    saved = tmp_path / "out" / "epoch_0"
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (saved / name).is_file(), name
    merged, info = transformers.AutoModelForCausalLM.from_pretrained(saved, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()  # still tied


@pytest.fixture(scope="module")
def gemma_folder(tmp_path_factory) -> Path:
    return save_gemma_folder(tmp_path_factory.mktemp("gemma2_folder"))


def test_gemma_folder_trains_and_saves_a_loadable_folder(gemma_folder, tmp_path):
    """Gemma-2 through the same config: chat template with <bos> and "model" turns, soft-capped logits in the
    chunked loss, and a merged folder transformers loads (tied) with our trained model's logits."""
    out = tmp_path / "out"
    run_tune(*_args(gemma_folder, out))
    losses = read_losses(out)
    assert len(losses) == 6 and losses[-1] < losses[0]
    merged, info = transformers.AutoModelForCausalLM.from_pretrained(out / "epoch_0", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert type(merged).__name__ == "Gemma2ForCausalLM"
    assert merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()


def test_full_finetune_of_a_tied_family_trains_one_embedding(qwen_folder, tmp_path):
    """full_finetune_single_device on a tied Qwen2 folder: one step moves the shared embedding/output matrix,
    and the saved folder (one copy, still tied) loads into transformers."""
    out = tmp_path / "out"
    run_tune("run", "full_finetune_single_device", "--config", "tiny/pretrain",
             "model=torchtune_lite.models.from_pretrained_config", f"model.checkpoint_dir={qwen_folder}",
             "tokenizer=torchtune_lite.models.from_pretrained_tokenizer", f"tokenizer.checkpoint_dir={qwen_folder}",
             f"checkpointer.checkpoint_dir={qwen_folder}", f"output_dir={out}", "epochs=1", "max_steps_per_epoch=1",
             "batch_size=2", "tokenizer.max_seq_len=32", "generate_after_training=null", "optimizer.fused=False",
             "log_every_n_steps=1", "lr_scheduler.num_warmup_steps=0")
    assert len(read_losses(out)) == 1
    before = transformers.AutoModelForCausalLM.from_pretrained(qwen_folder)
    after, info = transformers.AutoModelForCausalLM.from_pretrained(out / "epoch_0", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert after.lm_head.weight.data_ptr() == after.model.embed_tokens.weight.data_ptr()
    changed = {n for n, p in after.named_parameters() if not torch.equal(p, before.get_parameter(n))}
    assert changed == {n for n, _ in after.named_parameters()}  # every weight trained, the tied matrix included


def test_bad_folders_fail_in_one_line(qwen_folder, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in qwen_folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "architectures": ["FalconForCausalLM"]}))
    proc = run_tune(*_args(bad, tmp_path / "out1"), check=False)
    assert proc.returncode != 0 and "FalconForCausalLM" in proc.stderr and "Qwen2ForCausalLM" in proc.stderr
    assert not (tmp_path / "out1" / "epoch_0").exists()
    (bad / "config.json").unlink()
    proc = run_tune(*_args(bad, tmp_path / "out2"), check=False)
    assert proc.returncode != 0 and "config.json not found" in proc.stderr
    # a chat data set on a folder with no chat template and none named
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]))
    proc = run_tune(*_args(bad, tmp_path / "out3", "dataset._component_=torchtune_lite.datasets.chat_dataset",
                           f"dataset.data_files={chat}", "~dataset.packed"), check=False)
    assert proc.returncode != 0 and "no chat template and none is named" in proc.stderr


def test_tokenizer_bigger_than_the_embedding_fails_in_one_line(qwen_folder, tmp_path):
    other = tmp_path / "other_tokenizer"
    other.mkdir()
    train_byte_level_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], vocab_size=700).save(str(other / "tokenizer.json"))
    (other / "tokenizer_config.json").write_text((qwen_folder / "tokenizer_config.json").read_text())
    proc = run_tune(*_args(qwen_folder, tmp_path / "out", f"tokenizer.checkpoint_dir={other}"), check=False)
    assert proc.returncode != 0 and re.search(rf"^error: tokenizer {other} has 6\d\d tokens but the model's embedding has 512", proc.stderr, re.M)
    assert not (tmp_path / "out" / "epoch_0").exists()
