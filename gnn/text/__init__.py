"""Item text: the recipe that builds it from snapshot columns, the BERT encoder, and its cache.

Nothing heavy is imported here; the encoder loads ``transformers`` lazily on first use.
"""

from gnn.text.recipe import TextRecipe, build_item_texts, build_text
from gnn.text.encoder import EncoderConfig, TextEncoder, resolve_precision, resolve_text_model
from gnn.text.cache import EncodeStats, TextCache, encode_with_cache, text_hash

__all__ = [
    "EncodeStats",
    "EncoderConfig",
    "TextCache",
    "TextEncoder",
    "TextRecipe",
    "build_item_texts",
    "build_text",
    "encode_with_cache",
    "resolve_precision",
    "resolve_text_model",
    "text_hash",
]
