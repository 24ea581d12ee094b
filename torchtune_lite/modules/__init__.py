"""Plain nn.Modules that make up a Llama-2 decoder."""

from torchtune_lite.modules.attention import MultiHeadAttention
from torchtune_lite.modules.feed_forward import FeedForward
from torchtune_lite.modules.kv_cache import KVCache
from torchtune_lite.modules.position_embeddings import Llama3RopeScaling, RotaryPositionalEmbeddings
from torchtune_lite.modules.rms_norm import RMSNorm
from torchtune_lite.modules.transformer import TransformerDecoder, TransformerDecoderLayer

__all__ = [
    "FeedForward",
    "KVCache",
    "Llama3RopeScaling",
    "MultiHeadAttention",
    "RMSNorm",
    "RotaryPositionalEmbeddings",
    "TransformerDecoder",
    "TransformerDecoderLayer",
]
