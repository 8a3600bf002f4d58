"""Prompt/response data: reading JSONL/Parquet, chat templates, loss masks, batching, and
reasoning-gym task generators with their verifiers."""

from giftlab.data.records import read_records
from giftlab.data.tokenize import EncodeStats, collate, encode_records

__all__ = ["EncodeStats", "collate", "encode_records", "read_records"]
