"""Plain nn.Modules that make up a decoder (Llama, Qwen, Mistral, Gemma)."""

from torchtune_lite.modules.attention import MultiHeadAttention
from torchtune_lite.modules.feed_forward import FeedForward
from torchtune_lite.modules.kv_cache import KVCache
from torchtune_lite.modules.position_embeddings import LinearRopeScaling, Llama3RopeScaling, RotaryPositionalEmbeddings
from torchtune_lite.modules.rms_norm import RMSNorm
from torchtune_lite.modules.transformer import TransformerDecoder, TransformerDecoderLayer

__all__ = [
    "FeedForward",
    "KVCache",
    "LinearRopeScaling",
    "Llama3RopeScaling",
    "MultiHeadAttention",
    "RMSNorm",
    "RotaryPositionalEmbeddings",
    "TransformerDecoder",
    "TransformerDecoderLayer",
]
