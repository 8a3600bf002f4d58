"""`giftlab ref-cache`: the frozen reference's per-token distribution, computed once.

One pass of the reference over the training (and validation) examples, tokenised exactly as
`giftlab train` tokenises them, writes per response token the reference's top-K token ids and
log-probabilities, the gold token's log-probability and the log of the remaining (tail) mass, in
memory-mapped shards. Training from the cache (`giftlab train ref_cache=DIR`) loads no reference
model; GIFT's target on the top-K and the gold token is exact, the tail follows the rule of
giftlab.losses.cached (docs/theory.md section 4b, with its error bounds). With top_k >= V the
cache is exact.

The folder's layout, manifest and fingerprint, and the reading half, are the cache protocol of
giftlab.engine.cache; this module builds caches. A stopped build resumes at its first unfinished
shard.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from giftlab.data import read_records
from giftlab.data.tokenize import collate, encode_records
from giftlab.engine.cache import (
    MANIFEST,
    SPLITS,
    RefCacheError,
    differences,
    example_key,
    fingerprint,
    is_cache_manifest,
    logp_to_numpy,
    new_manifest,
    read_manifest,
    same_settings,
    shard_folder,
    write_manifest,
)
from giftlab.engine.objective import CausalLMBody
from giftlab.errors import writing
from giftlab.integrity import IntegrityError, check_sealed, file_record
from giftlab.models import check_model_name, config_vocab_size, lm_head, load_model, load_tokenizer
from giftlab.models.head import check_head
from giftlab.outputs import locked
from giftlab.refcache.config import RefCacheConfig
from giftlab.runtime.distributed import default_device
from giftlab.runtime.progress import progress_bar


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
    """The shard's arrays into a temporary folder renamed into place; a failed write is a
    WriteError naming the folder (the shards before it are kept: the same command resumes)."""
    with writing(folder, "the shards before it are kept: run the same command to resume"):
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


LOCK = ".lock"  # held while a build writes the folder: a second build into it is refused


@contextmanager
def claim_cache_folder(out: Path, manifest: dict, overwrite: bool, log):
    """Hold the cache folder `out` for the block, yielding the manifest to continue (same
    settings: resume) or a fresh one. A folder is a cache by its contents: a manifest in the
    cache's form, and nothing else but its shard folders; any other folder is refused (no advice
    to overwrite it), and overwrite=true removes only the shards. Every check runs before the
    folder is touched, and again under its lock (a second build into it is refused at once)."""
    _check_cache_folder(out, manifest, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / LOCK, f"out_dir={out}"):
        saved = _check_cache_folder(out, manifest, overwrite)
        if saved is not None:
            log(f"{out}: resuming a cache ({len(saved['shards'])} shard(s) finished)")
            yield saved
            return
        for split in SPLITS:
            if (out / split).is_dir():
                for shard in (out / split).iterdir():
                    shutil.rmtree(shard, ignore_errors=True)
                (out / split).rmdir()
        yield manifest


def _check_cache_folder(out: Path, manifest: dict, overwrite: bool) -> dict | None:
    """The saved manifest when `out` holds a cache of these settings (resume), None when a fresh
    build may start there (new or empty folder, or overwrite=true of a cache); RefCacheError (or
    IntegrityError) otherwise. Writes nothing."""
    if not (out.exists() and any(p.name != LOCK for p in out.iterdir())):
        return None
    saved = read_manifest(out, check=False)  # an edited manifest: refused below
    if saved is None:
        raise RefCacheError(
            f"out_dir={out} holds files and no {MANIFEST}: not a reference cache; give an "
            "empty or new folder"
        )
    if not is_cache_manifest(saved):
        raise RefCacheError(
            f"out_dir={out}: its {MANIFEST} is not a reference cache's (no fingerprint or "
            "shard list): the folder is not a cache; give an empty or new folder"
        )
    foreign = foreign_entries(out)
    if foreign:
        raise RefCacheError(
            f"out_dir={out} holds {foreign[0]}, which is not part of a reference cache: "
            "giftlab never writes among or deletes it; give an empty or new folder"
        )
    try:
        check_sealed(out / MANIFEST, saved, "give another out_dir, or overwrite=true")
    except IntegrityError:
        if overwrite:
            return None  # replaced: its shard list cannot be trusted
        raise
    if same_settings(saved, manifest):
        return saved
    if not overwrite:
        raise RefCacheError(
            f"out_dir={out} holds a cache built with other settings "
            f"({', '.join(differences(saved, manifest))}): give another out_dir, or "
            "overwrite=true to replace it"
        )
    return None


_SHARD = re.compile(r"^\d{5}(\.tmp\w*)?$")  # a shard folder, or one being written


def foreign_entries(out: Path) -> list[str]:
    """Entries of a cache folder that are not the cache's own (its manifest and the shard folders
    of its splits), as paths relative to it."""
    found = []
    for p in sorted(out.iterdir()):
        if p.name in (MANIFEST, MANIFEST + ".tmp", LOCK):
            continue
        if p.name in SPLITS and p.is_dir():
            found += [f"{p.name}/{q.name}" for q in sorted(p.iterdir()) if not _SHARD.match(q.name)]
            continue
        found.append(p.name)
    return found


def build_ref_cache(cfg: RefCacheConfig, model=None, tokenizer=None, log=print) -> Path:
    """Write (or resume) the cache of `cfg`; returns its folder. `model`: the reference as an
    object (tests); else cfg.ref_model or cfg.model is loaded."""

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
    examples = {
        split: encode_records(recs, tokenizer, cfg.max_length, cfg.overlong)[0]
        for split, recs in records.items()
    }
    for split, exs in examples.items():  # before the folder is touched
        tokens = sum(sum(1 for y in e["labels"] if y != -100) for e in exs)
        if tokens == 0:
            path = splits[split][0]
            raise RefCacheError(
                f"{path}: no response token left to cache (max_length={cfg.max_length}, "
                f"overlong={cfg.overlong}: {len(records[split])} record(s), {len(exs)} kept); "
                "raise max_length or use overlong=truncate"
            )
    _check_vocabulary(cfg, model, tokenizer)
    parts = fingerprint(cfg, model if model is not None else ref_name, tokenizer)
    manifest = new_manifest(parts, cfg.top_k, cfg.dtype, cfg.shard_examples)
    out = Path(cfg.out_dir)
    with claim_cache_folder(out, manifest, cfg.overwrite, log) as manifest:
        ref = (
            model
            if model is not None
            else load_model(ref_name, attn_implementation=cfg.attn_implementation)
        )
        device = next(ref.parameters()).device if model is not None else default_device()
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


def _check_vocabulary(cfg: RefCacheConfig, model, tokenizer) -> None:
    """Before the folder is touched: the reference's vocabulary is the policy's (a reference
    with another one gives rows GIFT cannot compare) and holds every id of the tokenizer.
    Read from the models' configs (their weights are not loaded yet), or the object's head."""
    ref_name = cfg.ref_model or cfg.model
    v_ref = lm_head(model).weight.shape[0] if model is not None else config_vocab_size(ref_name)
    if v_ref is None:
        return  # a config without vocab_size: the head is checked when the model is loaded
    if cfg.ref_model and model is None and cfg.ref_model != cfg.model:
        v_pol = config_vocab_size(cfg.model)
        if v_pol is not None and v_pol != v_ref:
            raise RefCacheError(
                f"ref_model={cfg.ref_model} has a vocabulary of {v_ref} tokens, model={cfg.model} "
                f"one of {v_pol}: a cache trains model, so they must share one vocabulary (one "
                "tokenizer)"
            )
    if len(tokenizer) > v_ref:
        raise RefCacheError(
            f"ref_model={ref_name}: the tokenizer of model={cfg.model} has {len(tokenizer)} "
            f"tokens but the reference's vocabulary is {v_ref}: it cannot score them"
        )


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

    t0 = time.perf_counter() if t0 is None else t0
    out = Path(out)
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
                "logp": logp_to_numpy(cat["logp"], settings["dtype"]),
                "gold": cat["gold"].cpu().numpy(),
                "tail": cat["tail"].cpu().numpy(),
                "offsets": np.asarray(offsets, dtype=np.int64),
                "keys": np.asarray([example_key(e["input_ids"]) for e in part], dtype=np.int64),
            }
            folder = shard_folder(out, split, sh)
            _write_shard(folder, arrays)
            for name in arrays:  # each array's record, in the manifest written after it
                rel = (folder / f"{name}.npy").relative_to(out).as_posix()
                manifest.setdefault("files", {})[rel] = file_record(folder / f"{name}.npy")
            manifest["shards"].setdefault(split, []).append(sh)
            write_manifest(out, manifest)
        bar.close()
        stats[split] = {"examples": len(exs), "shards": n_shards}
    manifest["complete"] = True
    manifest["vocab"] = int(head.weight.shape[0])
    manifest["splits"] = stats
    manifest["build_s"] = manifest.get("build_s", 0.0) + (time.perf_counter() - t0)
    write_manifest(out, manifest)
    nbytes = sum(p.stat().st_size for p in out.rglob("*.npy"))
    tokens = sum(int(np.load(p, mmap_mode="r").shape[0]) for p in out.rglob("gold.npy"))
    log(
        f"{out}: {tokens} response tokens, K = {min(k, manifest['vocab'])}, "
        f"{nbytes / max(tokens, 1):.0f} bytes per token, {manifest['build_s']:.1f} s"
    )
