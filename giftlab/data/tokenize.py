"""Records -> token ids with a loss mask on response tokens only, a truncation policy, batching.

input_ids = prompt_ids + response_ids + [eos];   labels = [-100] * len(prompt_ids) + response_ids + [eos]
The prompt is the tokenizer's chat template with the generation prompt when it has one, else
the plain prompt text followed by a newline. labels are aligned with input_ids (the model's
shift happens in the trainer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

OVERLONG_POLICIES = ("skip", "fail", "truncate")


@dataclass
class EncodeStats:
    kept: int = 0
    skipped_overlong: int = 0
    truncated: int = 0
    skipped_where: list[str] = field(default_factory=list)


def prompt_text(tokenizer, messages: list[dict]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(m["content"] for m in messages) + "\n"


def encode_records(records, tokenizer, max_length: int, overlong: str = "skip"):
    """-> (list of {"input_ids", "labels"} int lists, EncodeStats).

    overlong: "skip" (count and drop), "fail" (ValueError naming file:line), or "truncate" (cut the
    response; a prompt that alone fills max_length is still skipped).
    """
    if overlong not in OVERLONG_POLICIES:
        raise ValueError(f"overlong must be one of {OVERLONG_POLICIES}, got {overlong!r}")
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no eos token")
    stats, out = EncodeStats(), []
    for rec in records:
        p_ids = tokenizer(prompt_text(tokenizer, rec["messages"]), add_special_tokens=False)[
            "input_ids"
        ]
        r_ids = tokenizer(rec["response"], add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
        if len(p_ids) + len(r_ids) > max_length:
            if overlong == "fail":
                raise ValueError(
                    f"{rec['where']}: {len(p_ids)} prompt + {len(r_ids)} response tokens exceed "
                    f"max_length={max_length} (set overlong=skip or truncate)"
                )
            if overlong == "skip" or len(p_ids) >= max_length:
                stats.skipped_overlong += 1
                stats.skipped_where.append(rec["where"])
                continue
            r_ids = r_ids[: max_length - len(p_ids)]
            stats.truncated += 1
        out.append({"input_ids": p_ids + r_ids, "labels": [-100] * len(p_ids) + r_ids})
        stats.kept += 1
    return out, stats


def collate(examples, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: input_ids (B, T), attention_mask (B, T), labels (B, T)."""
    t = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), t), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), t), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), t), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
