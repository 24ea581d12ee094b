"""Tiny random Hugging Face checkpoints of each supported family, with the features that set it apart.

Built locally with transformers (no download): Llama-3 with llama3 RoPE scaling and tied embeddings,
Qwen2 with q/k/v biases and tied embeddings, Qwen3 with per-head q/k norms and a head_dim that is not
hidden/heads, Mistral with GQA and theta 1e6, Gemma-2 with soft-capping strong enough to bind and a
sliding window shorter than the test sequences, Gemma-3 with QK-norm, linear-scaled global RoPE and a
local base on its sliding layers. Norms and biases are randomized, since their initial values (ones,
zeros) would hide a mix-up such as a missed permutation.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

VOCAB = 160
CORPUS = Path(__file__).resolve().parents[3] / "torchtune_lite" / "assets" / "tiny" / "corpus.txt"
_SIZES = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6)


def _llama3() -> transformers.PretrainedConfig:
    # original_max_position_embeddings=16 puts the head's wavelengths in all three llama3 bands
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
    return transformers.LlamaConfig(**_SIZES, tie_word_embeddings=True,
                                    rope_parameters={**scaling, "rope_theta": 500_000.0})


def _qwen2() -> transformers.PretrainedConfig:
    return transformers.Qwen2Config(**_SIZES, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1e6})


def _qwen3() -> transformers.PretrainedConfig:
    return transformers.Qwen3Config(**_SIZES, head_dim=32, tie_word_embeddings=False,
                                    rope_parameters={"rope_type": "default", "rope_theta": 1e6})


def _mistral() -> transformers.PretrainedConfig:
    return transformers.MistralConfig(**_SIZES, sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 1e6})


# Gemma: head_dim (32) != hidden/heads, query_pre_attn_scalar != head_dim, window 8 < the tests' 24 tokens;
# weights 7x larger than the default init so attention scores are large enough for the caps to bend them.
_GEMMA = dict(_SIZES, head_dim=32, query_pre_attn_scalar=24, sliding_window=8, initializer_range=0.15,
              layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=True)


def _gemma2() -> transformers.PretrainedConfig:
    # caps low enough that tanh bends the tiny model's scores and logits
    return transformers.Gemma2Config(**_GEMMA, attn_logit_softcapping=2.0, final_logit_softcapping=1.5,
                                     rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})


def _gemma3() -> transformers.PretrainedConfig:
    rope = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}
    config = transformers.Gemma3TextConfig(**_GEMMA, rope_parameters=rope)
    config.architectures = ["Gemma3ForCausalLM"]
    return config


FAMILIES = {"llama3": _llama3, "qwen2": _qwen2, "qwen3": _qwen3, "mistral": _mistral, "gemma2": _gemma2, "gemma3": _gemma3}


def tiny_hf_model(family: str, seed: int = 0) -> transformers.PreTrainedModel:
    config = FAMILIES[family]()
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def save_tiny_hf(family: str, path: Path) -> tuple[transformers.PreTrainedModel, Path]:
    model = tiny_hf_model(family)
    model.save_pretrained(path)
    return model, path


def hf_logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens).logits


def train_byte_level_bpe(specials: list[str], vocab_size: int = 600) -> Tokenizer:
    """A byte-level BPE (the kind Llama-3, Qwen and Mistral ship as tokenizer.json) trained on the bundled corpus."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([str(CORPUS)], trainer)
    return tok


# Gemma-3's published template, text content only: system text joins the first user turn, assistant is "model".
GEMMA_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


def train_gemma_style_bpe(vocab_size: int = 600) -> Tokenizer:
    """A SentencePiece-style BPE as Gemma ships it in tokenizer.json: spaces become "▁" in the normalizer (no
    pre-tokenizer), `<bos>` added by the post-processor, ids 0-3 = <pad>, <eos>, <bos>, <unk>."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=GEMMA_SPECIALS, show_progress=False)
    tok.train([str(CORPUS)], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return tok
