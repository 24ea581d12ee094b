"""Token generation with a KV cache: greedy or sampled (temperature, top-k, top-p), stopping at EOS."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import torch


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> int:
    """logits: [vocab]. temperature 0 means greedy (argmax)."""
    logits = logits.float()
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        drop = sorted_probs.cumsum(0) - sorted_probs > top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.inference_mode()
def generate(
    model: torch.nn.Module,
    prompt: Sequence[int],
    *,
    max_new_tokens: int,
    stop_tokens: Sequence[int] = (),
    temperature: float = 0.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    use_cache: bool = True,
) -> list[int]:
    """Generates up to `max_new_tokens` after `prompt`; returns only the new tokens.

    With `use_cache` the prompt is run once and each new token costs one single-token forward; without it
    every step re-runs the whole sequence (slow, but an independent check of the cache).
    """
    device = next(model.parameters()).device
    max_len = len(prompt) + max_new_tokens
    if max_len > model.max_seq_len:
        raise ValueError(
            f"prompt of {len(prompt)} tokens + max_new_tokens={max_new_tokens} exceeds the model's context "
            f"of {model.max_seq_len} tokens: shorten the prompt or lower max_new_tokens"
        )
    was_training = model.training
    model.eval()
    tokens = torch.tensor([list(prompt)], device=device)
    new: list[int] = []
    try:
        if use_cache:
            model.setup_caches(batch_size=1, dtype=next(model.parameters()).dtype)
            positions = torch.arange(len(prompt), device=device)[None]
            logits = model(tokens, input_pos=positions)[0, -1]
        else:
            logits = model(tokens)[0, -1]
        for _ in range(max_new_tokens):
            token = sample_next_token(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            new.append(token)
            if token in stop_tokens:
                break
            if use_cache:
                pos = torch.tensor([[len(prompt) + len(new) - 1]], device=device)
                logits = model(torch.tensor([[token]], device=device), input_pos=pos)[0, -1]
            else:
                tokens = torch.cat([tokens, torch.tensor([[token]], device=device)], dim=1)
                logits = model(tokens)[0, -1]
    finally:
        if use_cache:
            model.reset_caches()
            model.teardown_caches()
        model.train(was_training)
    return new


@dataclass
class Completion:
    """What `complete` returns: the prompt's tokens, the new tokens (the stop token included if it stopped there),
    the decoded answer (without EOS) and the seconds the new tokens took."""

    prompt_tokens: list[int]
    tokens: list[int]
    text: str
    seconds: float


def encode_prompt(tokenizer, prompt: str, *, instruct_template: bool = True) -> list[int]:
    """BOS + `prompt`, wrapped in the Alpaca template exactly as the instruction data sets wrap it in training
    (`instruct_template=False` for a plain text-completion prompt); with a tokenizer that has a chat template,
    that text is the user turn of a chat ending in the template's generation prompt, as in training."""
    from torchtune_lite.data import Message, format_alpaca_prompt

    text = format_alpaca_prompt(prompt) if instruct_template else prompt
    if getattr(tokenizer, "chat_template", None) is not None:
        # training rendered the same user turn through the model's chat template; end with its assistant header
        return tokenizer.render_prompt([Message("user", text)])
    if getattr(tokenizer, "prompt_template", None) is not None:  # e.g. llama2_chat: BOS [INST] text [/INST]
        return tokenizer.tokenize_messages([Message("user", text)], truncate=False)[0]
    return tokenizer.encode(text, add_bos=True, add_eos=False)


def complete(
    model: torch.nn.Module, tokenizer, prompt: str, *, max_new_tokens: int = 48, instruct_template: bool = True, **sampling
) -> Completion:
    """Encodes `prompt` (see `encode_prompt`), generates until EOS or `max_new_tokens`, and decodes."""
    prompt_tokens = encode_prompt(tokenizer, prompt, instruct_template=instruct_template)
    start = time.perf_counter()
    # every EOS id the model declares (Llama-3's <|eot_id|> and <|end_of_text|>, Qwen's <|im_end|>, ...)
    stop_tokens = list(getattr(tokenizer, "stop_tokens", [tokenizer.eos_id]))  # a minimal tokenizer has only eos_id
    new = generate(model, prompt_tokens, max_new_tokens=max_new_tokens, stop_tokens=stop_tokens, **sampling)
    seconds = time.perf_counter() - start
    answer = new[:-1] if new and new[-1] in stop_tokens else new
    return Completion(prompt_tokens, new, tokenizer.decode(answer), seconds)


def generate_text(model: torch.nn.Module, tokenizer, instruction: str, *, max_new_tokens: int = 48, **sampling) -> str:
    """Formats `instruction` with the same Alpaca template used in training and decodes the answer."""
    return complete(model, tokenizer, instruction, max_new_tokens=max_new_tokens, **sampling).text
