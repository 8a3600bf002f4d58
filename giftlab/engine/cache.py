"""The reference cache's folder protocol, in one place: the layout, the manifest, the
fingerprint, and the reading half (`RefCache`, `open_ref_cache`). `giftlab ref-cache`
(giftlab.refcache), the trainer, the pipeline and GIFTTrainer all go through it.

Folder layout:

    manifest.json            settings, fingerprint parts, shards finished, complete flag, and
                             each array's record (bytes, SHA-256, dtype, shape); sealed with a
                             checksum of its own content (giftlab.integrity)
    train/00000/ids.npy      (tokens, K) int32      top-K ids
    train/00000/logp.npy     (tokens, K) dtype      their log-probabilities (bf16 as uint16 bits)
    train/00000/gold.npy     (tokens,) float32      log pi0(gold)
    train/00000/tail.npy     (tokens,) float32      log tail mass (-inf: none)
    train/00000/offsets.npy  (examples + 1,) int64  each example's first row in the shard
    train/00000/keys.npy     (examples,) int64      each example's content key (example_key)
    val/...                                         the same for the validation examples

The manifest's fingerprint holds a content hash of each part the cache depends on (reference
weights, tokenizer, each data file, tokenisation settings); a run whose own parts differ is
refused naming each part that differs. Every array is checked against its record once per run
when its shard is first read, and the manifest against its seal when it is read: a changed byte,
a cut file or an edited manifest is refused, naming the file (never trained on).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from giftlab.config import DataSettings
from giftlab.errors import InputError, writing
from giftlab.integrity import check_file, check_sealed, seal
from giftlab.models import resolve_model_path

DTYPES = ("float16", "bfloat16", "float32", "float64")
MANIFEST = "manifest.json"
VERSION = 2  # 2: arrays recorded with their checksums (1: none, read no more)
SHARD_EXAMPLES = 512  # examples per shard unless a build says otherwise
DEFAULT_TOP_K = 64  # reference tokens kept per position unless a build says otherwise
DEFAULT_DTYPE = "float16"  # storage of the log-probabilities unless a build says otherwise
SPLITS = ("train", "val")
SETTINGS = ("top_k", "dtype", "shard_examples")  # the cache's own settings, besides the fingerprint
# every data key but the files themselves (hashed by content): a key added to DataSettings is
# part of the fingerprint without a change here
TOKENISATION_KEYS = tuple(
    f.name for f in dataclasses.fields(DataSettings) if f.name not in ("train_file", "val_file")
)


class RefCacheError(InputError):
    """A cache that does not match the run, or a folder that is not a cache (exit 2)."""


# -- the manifest --------------------------------------------------------------------------------


def new_manifest(fingerprint_parts: dict, top_k: int, dtype: str, shard_examples: int) -> dict:
    """The manifest of a cache not yet built: its fingerprint and settings, no shard finished."""
    return {
        "version": VERSION,
        "fingerprint": fingerprint_parts,
        "top_k": top_k,
        "dtype": dtype,
        "shard_examples": shard_examples,
        "shards": {},
        "complete": False,
    }


REBUILD = "rebuild it with giftlab ref-cache (overwrite=true)"


def read_manifest(folder, check: bool = True) -> dict | None:
    """The manifest of a cache folder (None when it has none); RefCacheError naming the file
    when it is not JSON, IntegrityError when it was edited after giftlab sealed it (`check`)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise RefCacheError(
            f"{path} is not JSON ({err}): not a reference cache's manifest"
        ) from None
    if check and isinstance(data, dict):
        check_sealed(path, data, REBUILD)
    return data


def is_cache_manifest(manifest) -> bool:
    """Whether a manifest is in the cache's own form (what new_manifest writes)."""
    return (
        isinstance(manifest, dict)
        and isinstance(manifest.get("fingerprint"), dict)
        and isinstance(manifest.get("shards"), dict)
        and all(k in manifest for k in ("version", *SETTINGS))
    )


def is_complete(folder) -> bool:
    """Whether `folder` holds a finished cache that this giftlab reads (its cache version)."""
    manifest = read_manifest(folder)
    return bool(manifest and manifest.get("complete") and manifest.get("version") == VERSION)


def shard_folder(folder, split: str, shard: int) -> Path:
    return Path(folder) / split / f"{shard:05d}"


def same_settings(saved: dict, wanted: dict) -> bool:
    """Whether a saved manifest was built with the settings and fingerprint of `wanted`."""
    keys = ("version", "fingerprint", *SETTINGS)
    return {k: saved.get(k) for k in keys} == {k: wanted.get(k) for k in keys}


# -- the fingerprint -----------------------------------------------------------------------------------


def _sha(chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:16]


def _file_chunks(path: Path, size: int = 1 << 22):
    with open(path, "rb") as f:
        while block := f.read(size):
            yield block


def weights_hash(model_or_path) -> str:
    """A content hash of a model's weights: of its weight files for a folder (or 'smollm2'), of
    its state dict's tensors for a model object (a LoRA-wrapped one: its base weights only)."""
    if isinstance(model_or_path, (str, Path)):
        folder = Path(resolve_model_path(str(model_or_path)))
        files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])
        if not files:
            raise RefCacheError(f"{model_or_path}: no weight files to fingerprint")
        return _sha(b for p in files for b in (p.name.encode(), *_file_chunks(p)))
    # a LoRA-wrapped model's reference is its base weights: adapters (lora_*) are left out and
    # PEFT's renaming (.base_layer.) undone, so the hash is the plain model's whatever the
    # adapters' rank or seed
    state = {
        k.replace(".base_layer.", "."): v
        for k, v in model_or_path.state_dict().items()
        if ".lora_" not in k
    }

    def tensors():
        for k in sorted(state):
            t = state[k].detach().cpu().contiguous()
            yield k.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode()
            yield t.view(torch.uint8).numpy().tobytes() if t.numel() else b""

    return _sha(tensors())


def tokenizer_hash(tokenizer) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = json.dumps(
        [getattr(tokenizer, "chat_template", None), tokenizer.eos_token, tokenizer.pad_token]
    )
    return _sha([vocab.encode(), extra.encode()])


def fingerprint(cfg, reference, tokenizer) -> dict:
    """{part: hash or value} of what a cache depends on. `cfg`: a RefCacheConfig or TrainConfig
    (same key names); `reference`: the reference model object or its name/path."""
    parts = {
        "reference weights": weights_hash(reference),
        "tokenizer": tokenizer_hash(tokenizer),
        "train_file": _sha(_file_chunks(Path(cfg.train_file))),
        "val_file": _sha(_file_chunks(Path(cfg.val_file))) if cfg.val_file else "",
    }
    parts |= {k: getattr(cfg, k) for k in TOKENISATION_KEYS}
    return parts


def differences(saved: dict, wanted: dict) -> list[str]:
    """The names of the parts (and cache settings) in which two manifests differ."""
    diff = [
        k
        for k in sorted(set(saved.get("fingerprint", {})) | set(wanted.get("fingerprint", {})))
        if saved.get("fingerprint", {}).get(k) != wanted.get("fingerprint", {}).get(k)
    ]
    diff += [k for k in ("version", *SETTINGS) if k in wanted and saved.get(k) != wanted[k]]
    return diff


def example_key(input_ids) -> int:
    """A content key of one tokenised example (its token ids): how a trainer that batches its
    own way (GIFTTrainer, packing) finds an example's rows."""
    a = np.asarray(input_ids, dtype=np.int64)
    return int.from_bytes(hashlib.blake2b(a.tobytes(), digest_size=8).digest(), "little") >> 1


def write_manifest(out: Path, manifest: dict) -> None:
    """The manifest, sealed (giftlab.integrity.seal) and renamed into place: written after the
    shards it records."""
    tmp = out / (MANIFEST + ".tmp")
    with writing(out / MANIFEST, "the manifest before it is kept: run the same command to resume"):
        tmp.write_text(json.dumps(seal(manifest), indent=2))
        os.replace(tmp, out / MANIFEST)


# -- reading ---------------------------------------------------------------------------------


def logp_to_numpy(t: torch.Tensor, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return t.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    return t.to(getattr(torch, dtype)).cpu().numpy()


def logp_from_numpy(a: np.ndarray, dtype: str) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


@dataclass
class CachedRows:
    """The cached reference at n response tokens, on one device (see the module docstring)."""

    ids: torch.Tensor  # (n, K) int
    logp: torch.Tensor  # (n, K)
    gold: torch.Tensor  # (n,)
    tail: torch.Tensor  # (n,)
    NAMES: typing.ClassVar[tuple] = ("ids", "logp", "gold", "tail")

    def slice(self, s: int, e: int) -> CachedRows:
        return CachedRows(self.ids[s:e], self.logp[s:e], self.gold[s:e], self.tail[s:e])


def _load_shard_array(path: Path) -> np.ndarray:
    """One array of a shard, memory-mapped; RefCacheError naming the file when it is missing,
    truncated or not an array (numpy's own error names no file)."""
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        raise RefCacheError(
            f"{path}: cannot be read as a cache array ({err}); the cache is damaged: rebuild it "
            "with giftlab ref-cache (overwrite=true)"
        ) from None


class RefCache:
    """A finished cache folder, read by example index (memory-mapped: only the rows of a batch
    are read)."""

    def __init__(self, path):
        self.path = Path(path)
        m = self.path / MANIFEST
        if not m.exists():
            raise RefCacheError(
                f"ref_cache={path}: no {MANIFEST} (build it with giftlab ref-cache)"
            )
        self.manifest = read_manifest(self.path)
        if not is_cache_manifest(self.manifest):
            raise RefCacheError(
                f"ref_cache={path}: {m} is not a reference cache's manifest (no fingerprint or "
                "shard list); build one with giftlab ref-cache"
            )
        if self.manifest.get("version") != VERSION or not isinstance(
            self.manifest.get("files"), dict
        ):
            raise RefCacheError(
                f"ref_cache={path} was built by an older giftlab (cache version "
                f"{self.manifest.get('version')}; this one reads version {VERSION}, whose "
                f"manifest records each array's checksum): {REBUILD}"
            )
        if not self.manifest.get("complete"):
            raise RefCacheError(
                f"ref_cache={path} is not finished: run the same giftlab ref-cache command again "
                "to complete it"
            )
        self.dtype = self.manifest["dtype"]
        self.shard = self.manifest["shard_examples"]
        self._open, self._keys = {}, {}

    def check(self, parts: dict) -> None:
        """RefCacheError naming every part in which the run (`parts`, from `fingerprint`)
        differs from the cache."""
        diff = differences(self.manifest, {"fingerprint": parts})
        if diff:
            raise RefCacheError(
                f"ref_cache={self.path} was built for another run: {', '.join(diff)} differ(s); "
                "rebuild it with giftlab ref-cache and this run's settings"
            )

    def _array(self, split: str, sh: int, name: str) -> np.ndarray:
        """One array of a shard, checked against the manifest's record the first time this
        cache object reads it (size, dtype, shape, SHA-256), then memory-mapped."""
        path = shard_folder(self.path, split, sh) / f"{name}.npy"
        record = self.manifest["files"].get(path.relative_to(self.path).as_posix())
        if record is None:
            raise RefCacheError(f"{path}: not in {self.path / MANIFEST}'s records; {REBUILD}")
        check_file(path, record, REBUILD)
        return _load_shard_array(path)

    def _arrays(self, split: str, sh: int):
        key = (split, sh)
        if key not in self._open:
            self._open[key] = {
                n: self._array(split, sh, n) for n in ("ids", "logp", "gold", "tail", "offsets")
            }
        return self._open[key]

    def rows_by_key(self, keys, device) -> CachedRows:
        """The rows of the examples with these content keys (example_key), in that order, from
        whichever split holds them; RefCacheError when the cache holds some of them in none."""
        if not self._keys:
            for split in sorted(self.manifest["shards"]):
                for sh in sorted(self.manifest["shards"][split]):
                    for j, kk in enumerate(self._array(split, sh, "keys").tolist()):
                        self._keys.setdefault(kk, (split, sh * self.shard + j))
        missing = [kk for kk in keys if kk not in self._keys]
        if missing:
            raise RefCacheError(
                f"ref_cache={self.path}: {len(missing)} example(s) of this batch are not in the "
                "cache (tokenised differently, or other data): rebuild it"
            )
        parts = [self.rows(*self._keys[kk][:1], [self._keys[kk][1]], device) for kk in keys]
        return CachedRows(*(torch.cat([getattr(p, n) for p in parts]) for n in CachedRows.NAMES))

    def rows(self, split: str, indices, device) -> CachedRows:
        """The rows of the examples `indices` (in that order), concatenated, on `device`."""
        parts = {"ids": [], "logp": [], "gold": [], "tail": []}
        for i in indices:
            a = self._arrays(split, int(i) // self.shard)
            j = int(i) % self.shard
            s, e = int(a["offsets"][j]), int(a["offsets"][j + 1])
            for n in parts:
                parts[n].append(a[n][s:e])
        ids = torch.from_numpy(np.concatenate(parts["ids"])).to(device)
        logp = logp_from_numpy(np.concatenate(parts["logp"]), self.dtype).to(device)
        gold = torch.from_numpy(np.concatenate(parts["gold"])).to(device)
        tail = torch.from_numpy(np.concatenate(parts["tail"])).to(device)
        return CachedRows(ids, logp, gold, tail)


def open_ref_cache(cfg, tokenizer, reference=None) -> RefCache | None:
    """The run's cache (cfg.ref_cache), checked against the run before any work: its
    fingerprint (reference weights, tokenizer, data files, tokenisation settings) must be the
    run's, and it must hold a validation split when the run validates. `reference`: the
    reference as an object when the run was given one; else cfg.ref_model or cfg.model."""
    if not getattr(cfg, "ref_cache", ""):
        return None
    cache = RefCache(cfg.ref_cache)
    ref = reference if reference is not None else (cfg.ref_model or cfg.model)
    parts = fingerprint(cfg, ref, tokenizer)
    if not cfg.val_file:  # a run without validation reads no val split: its settings do not matter
        for key in ("val_file", "max_val_examples"):
            parts[key] = cache.manifest["fingerprint"].get(key)
    cache.check(parts)
    return cache
