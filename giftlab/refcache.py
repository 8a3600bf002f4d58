"""`giftlab ref-cache`: the frozen reference's per-token distribution, computed once.

One pass of the reference over the training (and validation) examples, tokenised exactly as
`giftlab train` tokenises them, writes per response token the reference's top-K token ids and
log-probabilities, the gold token's log-probability and the log of the remaining (tail) mass, in
memory-mapped shards. Training from the cache (`giftlab train ref_cache=DIR`) loads no reference
model; GIFT's target on the top-K and the gold token is exact, the tail follows the rule of
giftlab.losses.cached (docs/theory.md section 4b, with its error bounds). With top_k >= V the
cache is exact.

Folder layout:

    manifest.json            settings, fingerprint parts, shards finished, complete flag
    train/00000/ids.npy      (tokens, K) int32      top-K ids
    train/00000/logp.npy     (tokens, K) dtype      their log-probabilities (bf16 as uint16 bits)
    train/00000/gold.npy     (tokens,) float32      log pi0(gold)
    train/00000/tail.npy     (tokens,) float32      log tail mass (-inf: none)
    train/00000/offsets.npy  (examples + 1,) int64  each example's first row in the shard
    val/...                                         the same for the validation examples

The manifest's fingerprint holds a content hash of each part the cache depends on (reference
weights, tokenizer, each data file, tokenisation settings, K and dtype); a run whose own parts
differ is refused naming each part that differs. A stopped build resumes at its first unfinished
shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from giftlab.config import (
    ATTENTION_HELP,
    ATTENTION_RULE,
    DATA_RULES,
    DataSettings,
    FlatConfig,
    at_least,
    one_of,
)
from giftlab.config import setting as _f
from giftlab.errors import InputError

DTYPES = ("float16", "bfloat16", "float32", "float64")
MANIFEST = "manifest.json"
VERSION = 1
# every data key but the files themselves (hashed by content): a key added to DataSettings is
# part of the fingerprint without a change here
TOKENISATION_KEYS = tuple(
    f.name for f in dataclasses.fields(DataSettings) if f.name not in ("train_file", "val_file")
)


class RefCacheError(InputError):
    """A cache that does not match the run, or a folder that is not a cache (exit 2)."""


@dataclass
class RefCacheConfig(FlatConfig, DataSettings):
    """`giftlab ref-cache`: the model, reference, data and tokenisation keys of `giftlab train`
    (giftlab.config.DataSettings: one declaration for both), plus the cache's own."""

    model: str = _f(
        "smollm2", "the initial policy (its tokenizer; the reference when ref_model is empty)"
    )
    ref_model: str = _f("", "the reference model; empty: the initial policy, as in giftlab train")
    top_k: int = _f(64, "reference tokens kept per position (>= the vocabulary: exact)")
    dtype: str = _f("float16", f"storage of the log-probabilities: one of {list(DTYPES)}")
    out_dir: str = _f("runs/ref-cache", "the cache folder")
    batch_size: int = _f(8, "examples per reference forward pass")
    shard_examples: int = _f(512, "examples per shard (the unit a stopped build resumes at)")
    overwrite: bool = _f(False, "replace a cache in out_dir built with other settings")
    progress: bool = _f(True, "progress bar")
    attn_implementation: str = _f("auto", ATTENTION_HELP)

    RULES = (
        ATTENTION_RULE,
        ("top_k", at_least(1), ">= 1"),
        ("dtype", one_of(*DTYPES), f"one of {list(DTYPES)}"),
        ("batch_size", at_least(1), ">= 1"),
        ("shard_examples", at_least(1), ">= 1"),
        *DATA_RULES,
        ("model", bool, "a model folder, 'smollm2' or a hub id"),
    )


# -- fingerprints -----------------------------------------------------------------------------------


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
    its state dict's tensors for a model object."""
    if isinstance(model_or_path, (str, Path)):
        from giftlab.models import resolve_model_path

        folder = Path(resolve_model_path(str(model_or_path)))
        files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])
        if not files:
            raise RefCacheError(f"{model_or_path}: no weight files to fingerprint")
        return _sha(b for p in files for b in (p.name.encode(), *_file_chunks(p)))
    state = model_or_path.state_dict()

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


# -- building -----------------------------------------------------------------------------------


def _logp_to_numpy(t: torch.Tensor, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return t.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    return t.to(getattr(torch, dtype)).cpu().numpy()


def _logp_from_numpy(a: np.ndarray, dtype: str) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


@torch.no_grad()
def reference_rows(hidden, head, labels, k: int, exact: bool = False):
    """(ids (n, K), logp (n, K), gold (n,), log tail (n,)) from the reference's hidden states at
    n response positions; float64 when `exact` (dtype float64), else float32."""
    z = head.logits(hidden)
    z = z.double() if exact else z.float()
    lp = torch.log_softmax(z, -1)
    k = min(k, lp.shape[-1])
    top = lp.topk(k, -1)
    gold = lp.gather(-1, labels[:, None])[:, 0]
    support = torch.zeros_like(lp, dtype=torch.bool)
    support.scatter_(-1, top.indices, True).scatter_(-1, labels[:, None], True)
    tail = torch.logsumexp(lp.masked_fill(support, float("-inf")), -1)
    return top.indices.to(torch.int32), top.values, gold, tail


def _write_shard(folder: Path, arrays: dict) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp", dir=folder.parent))
    try:
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / MANIFEST)


def claim_cache_folder(out: Path, manifest: dict, overwrite: bool, log) -> dict:
    """The manifest to continue (same settings: resume) or a fresh one; refuses a folder of
    other files, and a cache of other settings unless overwrite."""
    if out.exists() and any(out.iterdir()):
        old = out / MANIFEST
        if not old.exists():
            raise RefCacheError(
                f"out_dir={out} holds files and no {MANIFEST}: not a reference cache; give an "
                "empty or new folder"
            )
        saved = json.loads(old.read_text())
        same = {k: saved.get(k) for k in ("fingerprint", "top_k", "dtype", "shard_examples")} == {
            k: manifest[k] for k in ("fingerprint", "top_k", "dtype", "shard_examples")
        }
        if same:
            log(f"{out}: resuming a cache ({len(saved['shards'])} shard(s) finished)")
            return saved
        if not overwrite:
            raise RefCacheError(
                f"out_dir={out} holds a cache built with other settings "
                f"({', '.join(differences(saved, manifest))}): give another out_dir, or "
                "overwrite=true to replace it"
            )
        foreign = [p.name for p in out.iterdir() if p.name not in (MANIFEST, "train", "val")]
        if foreign:
            raise RefCacheError(f"out_dir={out}: overwrite=true refused, it holds {foreign[0]}")
        for name in ("train", "val"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return manifest


def differences(saved: dict, wanted: dict) -> list[str]:
    """The names of the parts (and cache settings) in which two manifests differ."""
    diff = [
        k
        for k in sorted(set(saved.get("fingerprint", {})) | set(wanted.get("fingerprint", {})))
        if saved.get("fingerprint", {}).get(k) != wanted.get("fingerprint", {}).get(k)
    ]
    diff += [
        k for k in ("top_k", "dtype", "shard_examples") if k in wanted and saved.get(k) != wanted[k]
    ]
    return diff


def build_ref_cache(cfg: RefCacheConfig, model=None, tokenizer=None, log=print) -> Path:
    """Write (or resume) the cache of `cfg`; returns its folder. `model`: the reference as an
    object (tests); else cfg.ref_model or cfg.model is loaded."""
    from giftlab.data import read_records
    from giftlab.data.tokenize import encode_records
    from giftlab.models import check_model_name, load_model, load_tokenizer
    from giftlab.runtime.distributed import default_device

    ref_name = cfg.ref_model or cfg.model
    if model is None:
        check_model_name(
            ref_name, "ref_model" if cfg.ref_model else "model", cfg.attn_implementation
        )
    splits = {"train": (cfg.train_file, cfg.max_train_examples)}
    if cfg.val_file:
        splits["val"] = (cfg.val_file, cfg.max_val_examples)
    records = {
        s: read_records(path, cfg.prompt_key, cfg.response_key, cfg.messages_key, limit=n or None)
        for s, (path, n) in splits.items()
    }
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model)
    t0 = time.perf_counter()
    manifest = {
        "version": VERSION,
        "fingerprint": fingerprint(cfg, model if model is not None else ref_name, tokenizer),
        "top_k": cfg.top_k,
        "dtype": cfg.dtype,
        "shard_examples": cfg.shard_examples,
        "shards": {},
        "complete": False,
    }
    out = Path(cfg.out_dir)
    manifest = claim_cache_folder(out, manifest, cfg.overwrite, log)
    ref = (
        model
        if model is not None
        else load_model(ref_name, attn_implementation=cfg.attn_implementation)
    )
    device = next(ref.parameters()).device if model is not None else default_device()
    examples = {
        split: encode_records(recs, tokenizer, cfg.max_length, cfg.overlong)[0]
        for split, recs in records.items()
    }
    settings = {k: getattr(cfg, k) for k in ("top_k", "dtype", "shard_examples", "batch_size")}
    write_cache(
        out,
        manifest,
        examples,
        ref.to(device),
        tokenizer.pad_token_id,
        settings,
        cfg.progress,
        name=f"ref_model={ref_name}",
        log=log,
        t0=t0,
    )
    return out


def example_key(input_ids) -> int:
    """A content key of one tokenised example (its token ids): how a trainer that batches its
    own way (GIFTTrainer, packing) finds an example's rows."""
    a = np.asarray(input_ids, dtype=np.int64)
    return int.from_bytes(hashlib.blake2b(a.tobytes(), digest_size=8).digest(), "little") >> 1


@torch.no_grad()
def write_cache(
    out,
    manifest,
    examples,
    ref,
    pad_id,
    settings,
    progress=True,
    name="ref_model",
    log=print,
    t0=None,
) -> None:
    """The reference's rows of `examples` ({split: [{"input_ids", "labels"}]}, labels aligned
    with input_ids, -100 where not trained) written into `out` shard by shard (a shard already in
    manifest["shards"] is kept: a stopped build resumes), then the manifest marked complete.
    settings: top_k, dtype, shard_examples, batch_size."""
    from giftlab.data.tokenize import collate
    from giftlab.models.head import check_head
    from giftlab.runtime.objective import CausalLMBody
    from giftlab.runtime.progress import progress_bar

    t0 = time.perf_counter() if t0 is None else t0
    ref.eval()
    exact = settings["dtype"] == "float64"
    if exact:
        ref.double()
    head = check_head(ref, name=name)
    body, device = CausalLMBody(ref), next(ref.parameters()).device
    k, size, bs = settings["top_k"], settings["shard_examples"], settings["batch_size"]
    stats = {}
    for split, exs in examples.items():
        n_shards = -(-len(exs) // size)
        done = set(manifest["shards"].get(split, []))
        finished = sum(min(size, len(exs) - sh * size) for sh in done)  # examples, not shards
        bar = progress_bar(len(exs), finished, f"ref-cache {split}", progress, unit="example")
        for sh in range(n_shards):
            if sh in done:
                continue
            part = exs[sh * size : (sh + 1) * size]
            cols = {"ids": [], "logp": [], "gold": [], "tail": []}
            offsets = [0]
            for s in range(0, len(part), bs):
                b = collate(part[s : s + bs], pad_id, device)
                labels = b["labels"][:, 1:]
                valid = labels != -100
                hidden = body(b["input_ids"], b["attention_mask"])[:, :-1][valid]
                for c, t in zip(cols, reference_rows(hidden, head, labels[valid], k, exact)):
                    cols[c].append(t)
                offsets += (valid.sum(1).cumsum(0) + offsets[-1]).tolist()
                bar.update(b["input_ids"].shape[0])
            cat = {c: torch.cat(v) for c, v in cols.items()}
            arrays = {
                "ids": cat["ids"].cpu().numpy(),
                "logp": _logp_to_numpy(cat["logp"], settings["dtype"]),
                "gold": cat["gold"].cpu().numpy(),
                "tail": cat["tail"].cpu().numpy(),
                "offsets": np.asarray(offsets, dtype=np.int64),
                "keys": np.asarray([example_key(e["input_ids"]) for e in part], dtype=np.int64),
            }
            _write_shard(Path(out) / split / f"{sh:05d}", arrays)
            manifest["shards"].setdefault(split, []).append(sh)
            _write_manifest(Path(out), manifest)
        bar.close()
        stats[split] = {"examples": len(exs), "shards": n_shards}
    manifest["complete"] = True
    manifest["vocab"] = int(head.weight.shape[0])
    manifest["splits"] = stats
    manifest["build_s"] = manifest.get("build_s", 0.0) + (time.perf_counter() - t0)
    _write_manifest(Path(out), manifest)
    nbytes = sum(p.stat().st_size for p in Path(out).rglob("*.npy"))
    tokens = sum(int(np.load(p, mmap_mode="r").shape[0]) for p in Path(out).rglob("gold.npy"))
    log(
        f"{out}: {tokens} response tokens, K = {min(k, manifest['vocab'])}, "
        f"{nbytes / max(tokens, 1):.0f} bytes per token, {manifest['build_s']:.1f} s"
    )


# -- reading -----------------------------------------------------------------------------------


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
        self.manifest = json.loads(m.read_text())
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

    def _arrays(self, split: str, sh: int):
        key = (split, sh)
        if key not in self._open:
            folder = self.path / split / f"{sh:05d}"
            self._open[key] = {
                n: np.load(folder / f"{n}.npy", mmap_mode="r")
                for n in ("ids", "logp", "gold", "tail", "offsets")
            }
        return self._open[key]

    def rows_by_key(self, keys, device) -> CachedRows:
        """The rows of the examples with these content keys (example_key), in that order, from
        whichever split holds them; RefCacheError when the cache holds some of them in none."""
        if not self._keys:
            for split in sorted(self.manifest["shards"]):
                for sh in sorted(self.manifest["shards"][split]):
                    folder = self.path / split / f"{sh:05d}"
                    for j, kk in enumerate(np.load(folder / "keys.npy").tolist()):
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
        logp = _logp_from_numpy(np.concatenate(parts["logp"]), self.dtype).to(device)
        gold = torch.from_numpy(np.concatenate(parts["gold"])).to(device)
        tail = torch.from_numpy(np.concatenate(parts["tail"])).to(device)
        return CachedRows(ids, logp, gold, tail)


def cache_config_help() -> str:
    return RefCacheConfig.help_text()


__all__ = [
    "CachedRows",
    "RefCache",
    "RefCacheConfig",
    "RefCacheError",
    "build_ref_cache",
    "fingerprint",
    "reference_rows",
]


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
