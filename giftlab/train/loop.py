"""The SFT / GIFT / baselines training loop: one explicit loop, no trainer class.

    for each optimiser step:
        take grad_accum micro-batches (each process its slice of the global batch)
        loss = sum over response tokens of the objective / response tokens in the global batch
        backward, clip, AdamW step, schedule step
        log loss/, perf/ (and diag/ every diag_every steps), validate, checkpoint

Run it directly (`giftlab train`) or under torchrun (DDP by default; FSDP2 with distributed=fsdp).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from giftlab.data import collate, encode_records, read_records
from giftlab.diagnostics import summarize_token_stats, topk_overlap
from giftlab.losses import (
    OBJECTIVES,
    fused_linear_gift_loss,
    fused_linear_sequence_consistent_gift_loss,
    fused_linear_sft_loss,
    gift_token_stats,
    sequence_gains,
)
from giftlab.provenance import provenance
from giftlab.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from giftlab.train.config import TrainConfig

FUSED = {"sft", "gift", "gift_seq"}


class NonFiniteLossError(RuntimeError):
    pass


# -- distributed ----------------------------------------------------------------------------------


def _dist_setup():
    """(rank, world, device, mode) from torchrun's environment; mode: none, ddp or fsdp."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    if world == 1:
        return 0, 1, device, "none"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), world, device, os.environ.get("GIFTLAB_DISTRIBUTED", "ddp")


def _all_sum(x: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(x)
    return x


# -- model pieces ---------------------------------------------------------------------------------


class CausalLMBody(torch.nn.Module):
    """The model without its head: forward returns the final hidden states (B, T, H). Wrapped by
    DDP, so that the chunked loss can use the lm_head weight directly."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def decoder(self):
        m = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return m.get_decoder()

    def head(self):
        m = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return m.get_output_embeddings()

    def forward(self, input_ids, attention_mask):
        return self.decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _lm_logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


# -- data order -----------------------------------------------------------------------------------


class DataOrder:
    """Epoch permutations seeded by (seed, epoch); the position is (epoch, offset) in examples.
    Each global micro-batch takes world * batch_size examples; process r gets its r-th slice.
    An epoch's remainder smaller than a global micro-batch is dropped."""

    def __init__(self, n: int, batch_size: int, world: int, rank: int, seed: int):
        self.n, self.bs, self.world, self.rank, self.seed = n, batch_size, world, rank, seed
        if n < batch_size * world:
            raise ValueError(
                f"{n} training examples cannot fill one global micro-batch of {batch_size * world}"
            )
        self.epoch, self.offset = 0, 0
        self._perm = self._make_perm()

    def _make_perm(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g)

    def next_indices(self) -> list[int]:
        span = self.bs * self.world
        if self.offset + span > self.n:
            self.epoch, self.offset = self.epoch + 1, 0
            self._perm = self._make_perm()
        start = self.offset + self.rank * self.bs
        self.offset += span
        return self._perm[start : start + self.bs].tolist()

    def state(self):
        return {"epoch": self.epoch, "offset": self.offset}

    def load(self, state):
        self.epoch, self.offset = state["epoch"], state["offset"]
        self._perm = self._make_perm()


# -- the objective --------------------------------------------------------------------------------


def _objective_sum(cfg, body, ref_body, policy_model, ref_model, batch, lora, fsdp, old_logp=None):
    """(sum over response tokens of the per-token loss, number of response tokens).

    Only response positions reach the head: hidden states are gathered at valid labels first, so
    the (tokens x V) head work scales with response tokens, not with prompt length.
    """
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    lab = labels[valid]  # (n,)
    n_tokens = int(valid.sum())
    fn, needs_ref = OBJECTIVES[cfg.objective]
    if fsdp:  # sharded parameters are only whole inside the root's forward: use its logits
        logits = _lm_logits(policy_model, batch)[:, :-1][valid]
        hidden = None
    else:
        hidden = body(batch["input_ids"], batch["attention_mask"])[:, :-1][valid]  # (n, H)
    ref_hidden = None
    if needs_ref:
        with torch.no_grad(), _ref_context(policy_model, lora):
            if fsdp:
                ref_logits = _lm_logits(ref_model, batch)[:, :-1][valid]
            else:
                ref_hidden = ref_body(batch["input_ids"], batch["attention_mask"])[:, :-1][valid]
    head = _unwrap(body).head()
    if cfg.chunked and cfg.objective in FUSED and not fsdp:
        chunk = cfg.chunk_size or None
        if cfg.objective == "sft":
            mean = fused_linear_sft_loss(hidden, head.weight, lab, bias=head.bias, chunk_size=chunk)
        else:
            ref_head = _unwrap(ref_body).head()
            common = dict(ref_hidden=ref_hidden, ref_weight=ref_head.weight.detach(), bias=head.bias,
                          ref_bias=None if ref_head.bias is None else ref_head.bias.detach(),
                          smoothing=cfg.smoothing, chunk_size=chunk)  # fmt: skip
            if cfg.objective == "gift":
                mean = fused_linear_gift_loss(hidden, head.weight, lab, beta=cfg.beta, **common)
            else:  # gains reset at each row: the row index of every response token is its segment
                rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(
                    labels
                )[valid]
                mean = fused_linear_sequence_consistent_gift_loss(
                    hidden, head.weight, lab[None], eta=cfg.eta, segment_ids=rows[None], **common
                )
        return mean * n_tokens, n_tokens
    if not fsdp:
        logits = head(hidden)  # (n, V)
        if needs_ref:
            ref_logits = _unwrap(ref_body).head()(ref_hidden)
    kwargs = {
        "gift": {"beta": cfg.beta, "smoothing": cfg.smoothing},
        "gift_seq": {"eta": cfg.eta, "smoothing": cfg.smoothing},
        "sft_entropy": {"alpha": cfg.alpha},
        "asft": {"alpha": cfg.alpha},
        "label_smoothing": {"eps": cfg.label_eps},
        "psft": {"old_logp": old_logp, "clip_low": cfg.clip_low, "clip_high": cfg.clip_high},
    }.get(cfg.objective, {})
    if cfg.objective == "gift_seq":  # one sequence per row: keep the (B, T) layout for the gains
        rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[valid]
        return fn(
            logits[None],
            ref_logits[None],
            lab[None],
            reduction="sum",
            segment_ids=rows[None],
            **kwargs,
        ), n_tokens
    return fn(logits, ref_logits if needs_ref else None, lab, reduction="sum", **kwargs), n_tokens


def _unwrap(body):
    return body.module if hasattr(body, "module") else body


def _ref_context(policy_model, lora):
    return policy_model.disable_adapter() if lora else nullcontext()


def _valid_logits(model, batch, valid):
    """Logits at the response positions only, (n, V)."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = m.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    return m.get_output_embeddings()(hidden[:, :-1][valid])


@torch.no_grad()
def _gold_logp(model, batch):
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    logits = _valid_logits(model, batch, valid).float()
    return torch.log_softmax(logits, -1).gather(-1, labels[valid].unsqueeze(-1)).squeeze(-1)


# -- diagnostics and validation -------------------------------------------------------------------


@torch.no_grad()
def _token_stats(cfg, model, ref_model, batch, lora):
    """Teacher-forced per-token statistics of the policy, reference and GIFT target, (n,) each
    over the response tokens of the batch."""
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    logits = _valid_logits(model, batch, valid)
    with _ref_context(model, lora):
        ref_logits = _valid_logits(ref_model, batch, valid)
    lab = labels[valid]
    beta = cfg.beta
    if cfg.objective == "gift_seq":
        gold = torch.log_softmax(ref_logits.float(), -1).gather(-1, lab.unsqueeze(-1)).squeeze(-1)
        rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[valid]
        beta = sequence_gains(
            gold[None], torch.ones_like(gold[None], dtype=torch.bool), cfg.eta, rows[None]
        )[0]
    stats = gift_token_stats(logits, ref_logits, lab, beta, cfg.smoothing)
    stats["topk_overlap"] = topk_overlap(logits, ref_logits, cfg.top_k)
    return stats, torch.ones_like(lab, dtype=torch.bool)


def _validate(cfg, model, ref_model, examples, pad_id, lora, device) -> dict:
    sums, n = {}, 0
    gates = []
    model.eval()
    for s in range(0, len(examples), cfg.batch_size):
        batch = {
            k: v.to(device) for k, v in collate(examples[s : s + cfg.batch_size], pad_id).items()
        }
        stats, valid = _token_stats(cfg, model, ref_model, batch, lora)
        for k, t in stats.items():
            sums[k] = sums.get(k, 0.0) + float(t[valid].double().sum())
        gates.append(stats["gate_w"][valid])
        n += int(valid.sum())
    model.train()
    out = {f"val/{k}": v / max(n, 1) for k, v in sums.items()}
    out["val/ce"] = out.pop("val/ce_gold")
    w = torch.cat(gates).double()
    out["val/gate_w_frac_below_half"] = float((w < 0.5).double().mean()) if len(w) else 0.0
    out["val/tokens"] = n
    return out


# -- the loop -------------------------------------------------------------------------------------


def _seed_all(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries may draw from the global state
    torch.manual_seed(seed)


def _lr_lambda(cfg):
    def f(step):
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            span = max(1, cfg.max_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
        return 1.0

    return f


def _load_examples(cfg, tokenizer, path, limit, log):
    records = read_records(
        path, cfg.prompt_key, cfg.response_key, cfg.messages_key, limit=limit or None
    )
    examples, stats = encode_records(records, tokenizer, cfg.max_length, cfg.overlong)
    log(
        f"{path}: {stats.kept} examples, {stats.skipped_overlong} skipped as over-long, {stats.truncated} truncated"
    )
    if not examples:
        raise ValueError(
            f"{path}: every example was skipped (max_length={cfg.max_length}, overlong={cfg.overlong})"
        )
    return examples, stats


def train(
    cfg: TrainConfig, resume: bool = False, model=None, tokenizer=None, ref_model=None
) -> dict:
    """Train per `cfg`; returns the last metrics. `model`/`tokenizer` override cfg.model (tests)."""
    from giftlab.models import load_model, load_tokenizer

    rank, world, device, mode = _dist_setup()
    is_main = rank == 0
    out_dir = Path(cfg.out_dir)
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = print if is_main else (lambda *a, **k: None)
    _seed_all(cfg.seed)

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model)
    policy = model if model is not None else load_model(cfg.model)
    lora = cfg.lora_rank > 0
    if ref_model is None and not lora:
        ref_model = load_model(cfg.ref_model) if cfg.ref_model else _frozen_copy(policy)
    if lora:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(
            policy,
            LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules="all-linear"),
        )
        ref_model = policy  # same weights, adapters disabled in _ref_context
    else:
        ref_model.requires_grad_(False).eval()
    _check_vocab(policy, ref_model, tokenizer)
    if cfg.grad_checkpointing:
        policy.gradient_checkpointing_enable()
    policy.to(device).train()
    if not lora:
        ref_model.to(device)

    train_examples, train_stats = _load_examples(
        cfg, tokenizer, cfg.train_file, cfg.max_train_examples, log
    )
    val_examples = None
    if cfg.val_file:
        val_examples, _ = _load_examples(cfg, tokenizer, cfg.val_file, cfg.max_val_examples, log)
    order = DataOrder(len(train_examples), cfg.batch_size, world, rank, cfg.seed)

    fsdp = mode == "fsdp"
    body = CausalLMBody(policy)
    ref_body = body if lora else CausalLMBody(ref_model)
    if mode == "ddp":
        body = torch.nn.parallel.DistributedDataParallel(
            body, device_ids=[device.index] if device.type == "cuda" else None
        )
    elif fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in policy.get_decoder().layers:
            fully_shard(layer)
        fully_shard(policy)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))

    start_step, best_val = 0, math.inf
    metrics_path = out_dir / "metrics.jsonl"
    ckpt = latest_checkpoint(out_dir) if resume else None
    if resume and ckpt is None:
        log(f"--resume: no checkpoint in {out_dir}, starting from scratch")
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        _load_model_state(policy, state["model"], fsdp)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        order.load(state["data"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])  # noqa: NPY002
        random.setstate(state["rng"]["python"])
        start_step, best_val = state["step"], state["best_val"]
        if is_main:
            _truncate_metrics(metrics_path, start_step)
        log(f"resumed from {ckpt} at step {start_step}")
    elif is_main:
        metrics_path.write_text("")
    if is_main:
        (out_dir / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "provenance": provenance(),
                                                         "world_size": world, "distributed": mode}, indent=2))  # fmt: skip

    tb = _tensorboard(out_dir) if is_main else None
    pad_id = tokenizer.pad_token_id
    progress = _progress(cfg, start_step, is_main)
    last = {}
    last_ckpt = str(ckpt) if ckpt else None
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if (cfg.bf16 and device.type == "cuda")
        else nullcontext()
    )
    if start_step == 0 and val_examples:  # the base line: the initial model on held-out data
        row0 = {"step": 0} | _validate(cfg, policy, ref_model, val_examples, pad_id, lora, device)
        best_val = row0["val/ce"]
        if is_main:
            _log_metrics(metrics_path, tb, row0)
    for step in range(start_step, cfg.max_steps):
        t0 = time.perf_counter()
        micro = []
        for _ in range(cfg.grad_accum):
            micro.append(
                {
                    k: v.to(device)
                    for k, v in collate(
                        [train_examples[i] for i in order.next_indices()], pad_id
                    ).items()
                }
            )
        local_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
        global_tokens = int(
            _all_sum(torch.tensor(float(local_tokens), device=device), world).item()
        )
        loss_sum = torch.zeros((), device=device)
        for i, batch in enumerate(micro):
            old_logp = _gold_logp(policy, batch) if cfg.objective == "psft" else None
            sync = nullcontext() if (mode != "ddp" or i == len(micro) - 1) else body.no_sync()
            with sync, autocast:
                total, _ = _objective_sum(
                    cfg, body, ref_body, policy, ref_model, batch, lora, fsdp, old_logp
                )
                # DDP and FSDP average gradients over processes: scale by world to get the global token mean
                (total * world / max(global_tokens, 1)).backward()
            loss_sum += total.detach().float()
        loss = _all_sum(loss_sum, world) / max(global_tokens, 1)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss {loss.item()} at step {step + 1}; stopped before the optimiser step. "
                f"Last good checkpoint: {last_ckpt or 'none yet'} (resume with --resume)"
            )
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
            if cfg.clip_grad > 0
            else _grad_norm(params)
        )
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        n_in = sum(int(b["attention_mask"].sum()) for b in micro) * world
        row = {"step": step + 1, "epoch": order.epoch, "loss/train": loss.item(), "perf/lr": sched.get_last_lr()[0],
               "perf/grad_norm": float(grad_norm), "perf/step_s": dt, "perf/tokens_per_s": n_in / dt,
               "perf/response_tokens": global_tokens}  # fmt: skip
        if cfg.diag_every and (step + 1) % cfg.diag_every == 0:
            stats, valid = _token_stats(cfg, policy, ref_model, micro[0], lora)
            row |= summarize_token_stats(stats, valid, prefix="diag/")
        final = step + 1 == cfg.max_steps
        if val_examples and ((cfg.eval_every and (step + 1) % cfg.eval_every == 0) or final):
            row |= _validate(cfg, policy, ref_model, val_examples, pad_id, lora, device)
        if is_main:
            if (step + 1) % cfg.log_every == 0 or "val/ce" in row or final:
                _log_metrics(metrics_path, tb, row)
            progress.update(1)
            progress.set_postfix(
                loss=f"{row['loss/train']:.4f}", tok_s=f"{row['perf/tokens_per_s']:.0f}"
            )
        if "val/ce" in row and row["val/ce"] < best_val:
            best_val = row["val/ce"]
            if cfg.save_final:
                _save_pretrained(policy, tokenizer, out_dir / "best", fsdp, is_main, lora)
        if (cfg.save_every and (step + 1) % cfg.save_every == 0) or final:
            rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
                   "numpy": np.random.get_state()}  # noqa: NPY002 - the global state libraries use
            state = {"model": _model_state(policy, fsdp), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "data": order.state(), "step": step + 1,
                     "best_val": best_val, "config": cfg.to_dict(), "rng": rng}  # fmt: skip
            if is_main:
                last_ckpt = str(save_checkpoint(out_dir, step + 1, state, cfg.keep_checkpoints))
        last = row
    progress.close()
    if cfg.save_final:
        _save_pretrained(policy, tokenizer, out_dir / "final", fsdp, is_main, lora)
    if tb is not None:
        tb.close()
    last["data/train_examples"] = train_stats.kept
    last["data/skipped_overlong"] = train_stats.skipped_overlong
    return last


def _frozen_copy(model):
    import copy

    return copy.deepcopy(model)


def _check_vocab(policy, ref_model, tokenizer):
    v_pol = policy.get_output_embeddings().weight.shape[0]
    v_ref = ref_model.get_output_embeddings().weight.shape[0]
    if v_pol != v_ref:
        raise ValueError(
            f"policy vocabulary ({v_pol}) differs from reference vocabulary ({v_ref}): they must share one"
        )
    if len(tokenizer) > v_pol:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary is {v_pol}"
        )


def _grad_norm(params):
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())


def _model_state(model, fsdp):
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(
            model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _load_model_state(model, state, fsdp):
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(state)


def _save_pretrained(model, tokenizer, path, fsdp, is_main, lora):
    state = _model_state(model, fsdp)
    if not is_main:
        return
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    if lora:  # a merged copy loads like any checkpoint; the training model keeps its adapters
        import copy

        copy.deepcopy(model).merge_and_unload().save_pretrained(tmp)
    else:
        model.save_pretrained(tmp, state_dict=state)
    tokenizer.save_pretrained(tmp)
    if path.exists():
        import shutil

        shutil.rmtree(path)
    os.replace(tmp, path)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint we resume from (a killed run may have logged more)."""
    if not path.exists():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    path.write_text("".join(line + "\n" for line in keep))


def _log_metrics(path, tb, row):
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    if tb is not None:
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)):
                tb.add_scalar(k, v, row["step"])


def _tensorboard(out_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tb"))


class _NoProgress:
    def update(self, n):
        pass

    def set_postfix(self, **k):
        pass

    def close(self):
        pass


def _progress(cfg, start, is_main):
    if not (cfg.progress and is_main):
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=cfg.max_steps, initial=start, desc=f"train {cfg.objective}", unit="step")


def config_summary(cfg: TrainConfig) -> str:
    return json.dumps(asdict(cfg), indent=2)
