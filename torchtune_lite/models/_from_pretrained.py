"""Build the model a Hugging Face checkpoint folder describes, with or without LoRA/QLoRA, from its config.json."""

from pathlib import Path
from typing import Optional, Sequence, Union

from torchtune_lite.models._decoder import build_decoder, build_lora_decoder
from torchtune_lite.models._hf_config import decoder_args_from_hf_config, read_hf_config
from torchtune_lite.modules import TransformerDecoder


def from_pretrained_config(
    checkpoint_dir: Union[str, Path],
    lora_attn_modules: Optional[Sequence[str]] = None,
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
    max_seq_len: Optional[int] = None,
) -> TransformerDecoder:
    """The decoder `checkpoint_dir/config.json` describes (Llama-2/3.x, Mistral, Qwen2/2.5, Qwen3, Gemma-2/3), any size.

    In a config: `model: {_component_: torchtune_lite.models.from_pretrained_config,
    checkpoint_dir: ${checkpointer.checkpoint_dir}, lora_attn_modules: [q_proj, v_proj], quantize_base: True}`.

    Args:
        checkpoint_dir: the HF model folder (its config.json is read; the weights are loaded by the checkpointer).
        lora_attn_modules: attention projections to adapt; None (and no MLP/output LoRA) builds the plain model.
        apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha, lora_dropout: as in `lora_llama2`.
        quantize_base: QLoRA: the frozen base of every LoRA'd linear in NF4.
        max_seq_len: longest sequence (RoPE table, KV cache); default the config's max_position_embeddings.
            Lower it for long-context models to keep generation's KV cache small.
    """
    config = read_hf_config(checkpoint_dir)
    args = decoder_args_from_hf_config(config, source=str(Path(checkpoint_dir) / "config.json"), max_seq_len=max_seq_len)
    if not lora_attn_modules and not apply_lora_to_mlp and not apply_lora_to_output:
        if quantize_base:
            raise ValueError("quantize_base=True quantizes only LoRA'd linears but none were chosen: set lora_attn_modules")
        return build_decoder(args)
    return build_lora_decoder(
        args,
        list(lora_attn_modules or []),
        apply_lora_to_mlp,
        apply_lora_to_output,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        quantize_base=quantize_base,
    )
