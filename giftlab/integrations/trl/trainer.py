"""GIFTTrainer: `trl.SFTTrainer` whose loss is any objective of giftlab.losses.OBJECTIVES,
computed by giftlab's fused loss from the response tokens' hidden states (the package's
docstring says why SFTTrainer)."""

from __future__ import annotations

import copy
import functools
import warnings

import torch
from trl import SFTTrainer

from giftlab.data.tokenize import assistant_labels
from giftlab.engine.cache import (
    DEFAULT_DTYPE,
    DEFAULT_TOP_K,
    SHARD_EXAMPLES,
    RefCache,
    RefCacheError,
    example_key,
    new_manifest,
    read_manifest,
    tokenizer_hash,
    weights_hash,
)
from giftlab.engine.objective import CausalLMBody, Forward, Models, objective_sum, token_stats
from giftlab.integrations.trl.config import GIFTConfig
from giftlab.losses import OBJECTIVES
from giftlab.models import check_model_name, load_model
from giftlab.models.card import model_card, shown
from giftlab.models.head import check_head
from giftlab.refcache import claim_cache_folder, write_cache

__all__ = ["GIFTTrainer", "add_response_hidden"]


def add_response_hidden(model) -> None:
    """Patch `model.forward`: `model(..., labels=labels, response_hidden=True)` returns, at the
    positions whose next-token label is not -100, the tuple (hidden (n, H), labels (n,) shifted as
    HF's loss shifts them, rows (n,) the sequence of each token: a batch row, or a packed document
    where position_ids restart at 0). Any other call is the original forward. Calls go through
    the (DDP/FSDP-wrapped) model, so gradients are synchronised as usual."""
    original = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, response_hidden=False, labels=None, **kwargs):
        if not response_hidden:
            return (
                original(*args, labels=labels, **kwargs)
                if labels is not None
                else original(*args, **kwargs)
            )
        kwargs["use_cache"] = False
        hidden = self.get_decoder()(*args, **kwargs).last_hidden_state[:, :-1]  # (B, T-1, H)
        shifted = labels[:, 1:]
        valid = shifted != -100
        rows = torch.arange(shifted.shape[0], device=shifted.device)[:, None].expand_as(shifted)
        position_ids = kwargs.get("position_ids")
        if position_ids is not None:  # packed: a document starts where positions restart at 0
            docs = (position_ids == 0).cumsum(-1)[:, 1:]
            rows = rows * (position_ids.shape[1] + 1) + docs
        return hidden[valid], shifted[valid], rows[valid]

    if "forward" in model.__dict__ and not hasattr(model.forward, "__wrapped__"):
        del model.forward  # a stale instance patch (e.g. copied from another model)
    model.forward = forward.__get__(model)


def _forward(model, inputs, labels) -> Forward:
    hidden, shifted, rows = model(**inputs, labels=labels, response_hidden=True)
    return Forward(labels=shifted, rows=rows, hidden=hidden)


class GIFTTrainer(SFTTrainer):
    """`trl.SFTTrainer` training any objective of giftlab.losses.OBJECTIVES (see the module text).

    Args: as SFTTrainer, plus `ref_model` (a model, a path, or None for `args.ref_model_path` or a
    frozen copy of the initial model). `args` must be a GIFTConfig.
    """

    _tag_names = ["trl", "sft", "gift", "giftlab"]

    def __init__(self, model, ref_model=None, args: GIFTConfig | None = None, **kwargs):
        if args is None:
            args = GIFTConfig(output_dir="gift-output")
        if not isinstance(args, GIFTConfig):
            raise TypeError(f"args must be a GIFTConfig, got {type(args).__name__}")
        self._base_name = model if isinstance(model, str) else _model_name(model)
        self._data_name = _data_name(kwargs.get("train_dataset"))
        assistant_only = args.assistant_only_loss
        if assistant_only:  # conversations get giftlab's assistant labels; TRL's path is off
            warnings.warn(
                "GIFTTrainer: assistant_only_loss=True (giftlab's default; TRL's is False): "
                "conversational data train on the assistant turns only. Pass "
                "GIFTConfig(assistant_only_loss=False) to train on every token.",
                stacklevel=2,
            )
            tok = kwargs.get("processing_class") or _tokenizer_of(model)
            for key in ("train_dataset", "eval_dataset"):
                kwargs[key] = _assistant_labelled(kwargs.get(key), tok, key)
        args.assistant_only_loss = False  # TRL's own check would refuse a tokenized dataset
        try:
            super().__init__(model=model, args=args, **kwargs)
        finally:
            args.assistant_only_loss = assistant_only
        self._eval_ce = [0.0, 0]  # held-out one-hot CE: sum over tokens, tokens
        self.objective = OBJECTIVES[args.objective]
        policy = self.accelerator.unwrap_model(self.model)
        self._peft = hasattr(policy, "disable_adapter")
        base = policy.get_base_model() if self._peft else policy
        check_head(base, name="model")  # the fused head must give the model's own logits
        add_response_hidden(base)
        self.ref_cache = None
        if args.ref_cache:  # the reference's rows come from the cache: no reference model kept
            self.ref_cache = self._open_or_build_cache(ref_model, base)
            self.ref_model = None
        elif self._peft:
            self.ref_model = None  # the policy with its adapters off
        else:
            if ref_model is None and args.ref_model_path:
                ref_model = args.ref_model_path
            if isinstance(ref_model, str):  # checked first: a missing folder is named, not
                check_model_name(ref_model, "ref_model")  # sent to the hub as an id
                ref_model = load_model(ref_model, dtype=base.dtype)
            if ref_model is None:
                ref_model = copy.deepcopy(base)
                del ref_model.forward  # the copy's patched forward would call the policy's
            ref_model.requires_grad_(False).eval()
            check_head(ref_model, name="ref_model")
            add_response_hidden(ref_model)
            self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)

    # -- the loss ---------------------------------------------------------------------------------

    def _reference_hidden(self, model, inputs, labels):
        with torch.no_grad():
            if self._peft:
                with self.accelerator.unwrap_model(model).disable_adapter():
                    return _forward(model, inputs, labels).hidden
            return _forward(self.ref_model, inputs, labels).hidden

    def _models(self, model):
        policy = self.accelerator.unwrap_model(model)
        base = policy.get_base_model() if self._peft else policy
        body = CausalLMBody(base)  # the trainer's own body: its head() is what the loss reads
        if self.ref_cache is not None:
            return Models(
                policy=policy, body=body, ref=None, ref_body=None, ref_cache=self.ref_cache
            )
        ref = base if self._peft else self.accelerator.unwrap_model(self.ref_model)
        return Models(policy=policy, body=body, ref=ref, ref_body=CausalLMBody(ref))

    # -- the reference cache ------------------------------------------------------------------

    def _cache_examples(self) -> dict:
        """{split: [{"input_ids", "labels"}]} of the prepared datasets (train; val: every
        evaluation dataset)."""

        def rows(ds):  # packed rows (seq_lengths) are split into their documents
            out = []
            for r in ds:
                ids, labels = list(r["input_ids"]), list(r.get("labels") or r["input_ids"])
                s = 0
                for n in r.get("seq_lengths") or [len(ids)]:
                    out.append({"input_ids": ids[s : s + n], "labels": labels[s : s + n]})
                    s += n
            return out

        out = {"train": rows(self.train_dataset)}
        evals = self.eval_dataset
        if evals is not None:
            evals = evals.values() if isinstance(evals, dict) else [evals]
            out["val"] = [r for ds in evals for r in rows(ds)]
        return out

    def _open_or_build_cache(self, ref_model, base):
        """The cache of args.ref_cache: checked against this trainer's reference and tokenizer
        when it exists, else built from the prepared data (the reference runs once, then is
        dropped)."""
        from pathlib import Path

        a = self.args
        if ref_model is None:
            ref_model = a.ref_model_path or None
        if isinstance(ref_model, str):
            check_model_name(ref_model, "ref_model")
        reference = ref_model if ref_model is not None else base
        parts = {
            "reference weights": weights_hash(reference),
            "tokenizer": tokenizer_hash(self.processing_class),
        }
        out = Path(a.ref_cache)
        top_k = DEFAULT_TOP_K if a.ref_cache_top_k is None else a.ref_cache_top_k
        dtype = DEFAULT_DTYPE if a.ref_cache_dtype is None else a.ref_cache_dtype
        if read_manifest(out) is not None:
            cache = RefCache(out)
            saved = cache.manifest["fingerprint"]
            cache.check({k: parts.get(k, saved.get(k)) for k in saved})
            for key, asked, held in (
                ("ref_cache_top_k", a.ref_cache_top_k, cache.manifest["top_k"]),
                ("ref_cache_dtype", a.ref_cache_dtype, cache.manifest["dtype"]),
            ):
                if asked is not None and asked != held:
                    raise RefCacheError(
                        f"{key}={asked!r}, but ref_cache={out} holds a cache of {held!r}: give "
                        f"another ref_cache folder to build one, or {key}={held!r} (or None) to "
                        "use this one"
                    )
            return cache
        manifest = new_manifest(parts, top_k, dtype, SHARD_EXAMPLES)
        with claim_cache_folder(out, manifest, False, print) as manifest:
            if isinstance(reference, str):
                reference = load_model(reference, dtype=base.dtype)
            else:
                reference = copy.deepcopy(reference)
                if "forward" in reference.__dict__:
                    del reference.forward
            reference.to(base.device)
            settings = {"top_k": top_k, "dtype": dtype}
            settings |= {
                "shard_examples": SHARD_EXAMPLES,
                "batch_size": max(1, a.per_device_train_batch_size),
            }
            pad = self.processing_class.pad_token_id
            progress = self.is_world_process_zero() and not a.disable_tqdm
            write_cache(out, manifest, self._cache_examples(), reference, pad, settings, progress)
            del reference
        return RefCache(out)

    def _cached_rows(self, inputs):
        """The cache's rows of this batch's documents, in the order the loss flattens them: a
        document is a row (up to its padding) or, packed, a run of position ids from 0."""

        ids = inputs["input_ids"]
        keys = []
        for r in range(ids.shape[0]):
            row = ids[r]
            if "position_ids" in inputs:
                starts = (inputs["position_ids"][r] == 0).nonzero().flatten().tolist()
                bounds = [*starts, row.shape[0]]
                keys += [example_key(row[s:e].tolist()) for s, e in zip(bounds, bounds[1:])]
            elif "attention_mask" in inputs:
                keys.append(example_key(row[inputs["attention_mask"][r].bool()].tolist()))
            else:
                keys.append(example_key(row.tolist()))
        return self.ref_cache.rows_by_key(keys, ids.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        f = _forward(model, model_inputs, labels)
        if self.ref_cache is not None:
            f.ref_cached = self._cached_rows(inputs)
        else:
            f.ref_hidden = self._reference_hidden(model, model_inputs, labels)
        m = self._models(model)
        stats = {}
        total = objective_sum(
            self.args, self.objective, m, f, stats if self.objective.fused else None
        )
        if (
            not stats
        ):  # objectives without a fused GIFT pass: statistics from the same hidden states
            stats = token_stats(
                self.args,
                m,
                Forward(f.labels, f.rows, f.hidden.detach(), f.ref_hidden, ref_cached=f.ref_cached),
            )
        n_local = torch.tensor(f.n, device=total.device)
        denominator = n_local if num_items_in_batch is None else num_items_in_batch
        loss = total / torch.as_tensor(denominator, device=total.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        self._log_token_metrics(mode, stats, n_local, inputs)
        if mode == "eval":
            self._eval_ce[0] += float(stats["ce_gold"].detach().double().sum())
            self._eval_ce[1] += f.n
        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_inputs)
            return loss, outputs
        return loss

    def evaluation_loop(self, dataloader, description, *args, **kwargs):
        """Trainer's evaluation, plus `eval_ce`: the held-out one-hot cross-entropy per response
        token (over every process), the paper's checkpoint rule: metric_for_best_model="eval_ce"
        (greater_is_better=False)."""
        self._eval_ce = [0.0, 0]
        output = super().evaluation_loop(dataloader, description, *args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", args[2] if len(args) > 2 else "eval")
        sums = torch.tensor(self._eval_ce, dtype=torch.float64, device=self.accelerator.device)
        sums = self.accelerator.reduce(sums, reduction="sum")
        output.metrics[f"{prefix}_ce"] = float(sums[0] / sums[1].clamp(min=1))
        return output

    def save_model(self, output_dir=None, _internal_call=False):
        """Trainer's save, then giftlab's card in the saved folder (in place of PEFT's empty
        template) and, for an adapter, a hub id (or the base folder's own name) in
        adapter_config.json instead of a local path."""
        super().save_model(output_dir, _internal_call)
        folder = output_dir or self.args.output_dir
        if self.is_world_process_zero():
            _shareable_adapter_config(folder, self._base_name)
            self.create_model_card(folder=folder)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, folder=None):
        """README.md in output_dir naming GIFT, its beta, the objective, the base model and the
        data (giftlab.models.card)."""
        if not self.is_world_process_zero():
            return
        import os

        a = self.args
        card = model_card(
            objective=a.objective,
            base_model=self._base_name or "unknown",
            data=dataset_name or self._data_name,
            trainer="GIFTTrainer (TRL)",
            settings=a,
            reference=a.ref_model_path or None,
            extra={
                "learning rate": a.learning_rate,
                "epochs" if a.max_steps <= 0 else "steps": a.num_train_epochs
                if a.max_steps <= 0
                else a.max_steps,
                "assistant-only loss": a.assistant_only_loss,
                "bf16": a.bf16,
            },
            selection="Checkpoint rule of the paper: metric_for_best_model='eval_ce' (held-out "
            "one-hot cross-entropy).",
        )
        folder = folder or a.output_dir
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "README.md"), "w") as f:
            f.write(card)

    def _log_token_metrics(self, mode, stats, n_local, inputs):
        gather = self.accelerator.gather_for_metrics
        n = gather(n_local).sum().clamp(min=1)

        def mean(t):
            return (gather(t.detach().double().sum()).sum() / n).item()

        metrics = self._metrics[mode]
        metrics["entropy"].append(mean(stats["policy_entropy"]))
        metrics["mean_token_accuracy"].append(mean(stats["policy_gold_top1"]))
        metrics["gift/gate_w_mean"].append(mean(stats["gate_w"]))
        metrics["gift/gate_w_frac_below_half"].append(mean(stats["gate_w"] < 0.5))
        metrics["gift/target_entropy"].append(mean(stats["target_entropy"]))
        metrics["gift/kl_to_base"].append(mean(stats["kl_to_base"]))
        if mode == "train":
            if "attention_mask" in inputs:
                tokens = inputs["attention_mask"].sum()
            else:
                tokens = torch.tensor(inputs["input_ids"].numel(), device=n_local.device)
            self._total_train_tokens += int(gather(tokens).sum().item())
        metrics["num_tokens"] = [self._total_train_tokens]


def _shareable_adapter_config(folder, base_name) -> None:
    """adapter_config.json's base_model_name_or_path: the base's hub id (giftlab.models.card.
    hub_id), else the base folder's own name, never an absolute local path."""
    import json
    from pathlib import Path

    path = Path(folder) / "adapter_config.json"
    if not path.exists() or not base_name:
        return
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = shown(base_name)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _model_name(model) -> str | None:
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", None) or None


def _tokenizer_of(model):
    from transformers import AutoTokenizer

    name = model if isinstance(model, str) else _model_name(model)
    if not name:
        raise ValueError("GIFTTrainer: give processing_class (the tokenizer)")
    return AutoTokenizer.from_pretrained(name)


def _data_name(dataset) -> str:
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) if info is not None else None
    if name:
        return name
    n = len(dataset) if hasattr(dataset, "__len__") else "?"
    return f"{n} records given as a datasets.Dataset"


def _assistant_labelled(dataset, tokenizer, key):
    """A conversational dataset ('messages', not yet tokenized) as input_ids + labels, labels on
    the assistant turns only (giftlab.data.tokenize.assistant_labels); anything else unchanged."""
    if dataset is None:
        return None
    if isinstance(dataset, dict):
        return {k: _assistant_labelled(d, tokenizer, f"{key}[{k!r}]") for k, d in dataset.items()}
    columns = getattr(dataset, "column_names", None) or []
    if "messages" not in columns or "input_ids" in columns:
        return dataset

    def encode(example, idx):
        return assistant_labels(tokenizer, example["messages"], where=f"{key} record {idx}")

    return dataset.map(encode, with_indices=True, remove_columns=columns)
