"""Prompt/response data: reading JSONL/Parquet, chat templates, loss masks, batching, and
reasoning-gym task generators with their verifiers. Tokenizing and batching need torch, so they
load on first use (reading records and generating tasks do not)."""

from giftlab.data.records import read_records

__all__ = ["EncodeStats", "collate", "encode_records", "read_records"]


def __getattr__(name):
    if name in ("EncodeStats", "collate", "encode_records"):
        from giftlab.data import tokenize

        return getattr(tokenize, name)
    raise AttributeError(f"module 'giftlab.data' has no attribute {name!r}")
