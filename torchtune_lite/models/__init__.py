"""Model builders: per family (`llama2`, `llama3_1`, `llama3_2`, `qwen2_5`, `qwen3`, `mistral`, `gemma2`, `gemma3`)
and from any HF config.json."""

from torchtune_lite.models._from_pretrained import from_pretrained_config
from torchtune_lite.models._hf_tokenizer import HFTokenizer, from_pretrained_tokenizer

__all__ = ["HFTokenizer", "from_pretrained_config", "from_pretrained_tokenizer"]
