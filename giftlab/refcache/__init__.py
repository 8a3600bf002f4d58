"""`giftlab ref-cache`: the frozen reference's per-token distribution, computed once.
config.py (RefCacheConfig), build.py (the build, resumable shard by shard); the folder's
protocol and the reading half are giftlab.engine.cache."""

from giftlab.engine.cache import RefCacheError
from giftlab.refcache.build import build_ref_cache, claim_cache_folder, reference_rows, write_cache
from giftlab.refcache.config import RefCacheConfig, cache_config_help

__all__ = [
    "RefCacheConfig",
    "RefCacheError",
    "build_ref_cache",
    "cache_config_help",
    "claim_cache_folder",
    "reference_rows",
    "write_cache",
]
