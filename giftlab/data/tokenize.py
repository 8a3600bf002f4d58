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


def collate(examples, pad_id: int, device="cpu") -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: input_ids (B, T), attention_mask (B, T), labels (B, T),
    made on `device` (the CPU unless given: never torch's default device)."""
    t = max(len(e["input_ids"]) for e in examples)
    shape = (len(examples), t)
    ids = torch.full(shape, pad_id, dtype=torch.long, device=device)
    labels = torch.full(shape, -100, dtype=torch.long, device=device)
    mask = torch.zeros(shape, dtype=torch.long, device=device)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"], dtype=torch.long, device=device)
        labels[i, :n] = torch.tensor(e["labels"], dtype=torch.long, device=device)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def assistant_labels(tokenizer, messages: list[dict], where: str = "record") -> dict:
    """A whole conversation as {"input_ids", "labels"}: the chat template's text tokenized once,
    labels = input_ids on the assistant turns and -100 elsewhere (system and user turns, the
    template's role headers), whether or not the template has generation markers.

    An assistant turn's tokens are those whose text starts inside it: from the end of the
    template's text of the messages before it with the generation prompt, to its end-of-sequence
    token (included; what follows it in the turn, e.g. a newline, is not trained), as giftlab's
    own trainer labels a response. Needs a fast tokenizer (character offsets) and a template that
    renders each conversation prefix as a prefix of the whole; else ValueError naming `where`.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{where}: the tokenizer has no chat template to render messages with")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{where}: assistant-only labels need a fast tokenizer (character offsets); train on "
            "every token instead (assistant_only_loss=False)"
        )

    def render(msgs, gen=False):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    full = render(messages)
    spans = []
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        start, stop = render(messages[:i], gen=True), render(messages[: i + 1])
        if not (full.startswith(start) and full.startswith(stop) and len(start) <= len(stop)):
            raise ValueError(
                f"{where}: the chat template does not render the conversation up to message {i} "
                "as a prefix of the whole, so its assistant turns cannot be located; train on "
                "every token instead (assistant_only_loss=False)"
            )
        end = len(stop)
        eos = tokenizer.eos_token
        if eos and (k := full.find(eos, len(start), len(stop))) >= 0:
            end = k + len(eos)
        spans.append((len(start), end))
    if not spans:
        raise ValueError(f"{where}: the conversation has no assistant turn to train on")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [
        t if any(a <= s < b for a, b in spans) else -100
        for t, (s, _) in zip(ids, enc["offset_mapping"])
    ]
    return {"input_ids": ids, "labels": labels}


def common_prefix_length(prompt_ids: list[list[int]]) -> int:
    """The length of the longest token prefix all prompts share, leaving each prompt at least
    one token of its own (its last token starts sampling)."""
    if not prompt_ids:
        return 0
    first, n = prompt_ids[0], min(len(p) for p in prompt_ids) - 1
    for p in prompt_ids[1:]:
        i = 0
        while i < n and p[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)
