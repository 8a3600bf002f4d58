"""The model card (README.md) giftlab writes beside a fine-tuned model: what it was trained
towards (the objective and its parameters: GIFT's beta), from which base model, on which data,
with which trainer. Written by `giftlab train` into final/ and best/, by `giftlab rl` into final/,
and by GIFTTrainer into its output folder."""

from __future__ import annotations

import math

DESCRIPTIONS = {
    "sft": "one-hot supervised fine-tuning (the zero-temperature limit of GIFT)",
    "gift": "GIFT: finite-temperature SFT towards softmax(log pi0 + beta onehot(gold)) per token",
    "gift_seq": "sequence-consistent GIFT (per-token gains from the exact soft-Bellman solution)",
    "grpo": "GRPO (group-relative policy optimisation) with a verifier's reward",
}


def _value(v) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:g}"
    return str(v)


def objective_settings(objective: str, settings) -> dict:
    """{key: value} of the objective's own parameters, read from a settings object."""
    if objective == "grpo":
        return {}
    from giftlab.losses import OBJECTIVES

    obj = OBJECTIVES[objective]
    out = {}
    for arg, key in obj.hyper.items():
        values = obj.hyper_values(settings)
        out[key] = values.get(arg)
    return out


def model_card(
    *,
    objective: str,
    base_model: str,
    data: str,
    trainer: str,
    settings=None,
    reference: str | None = None,
    extra: dict | None = None,
    selection: str | None = None,
) -> str:
    """The card's markdown, with the YAML front matter the Hugging Face hub reads."""
    params = objective_settings(objective, settings) if settings is not None else {}
    what = DESCRIPTIONS.get(objective, f"the registered objective {objective!r}")
    label = objective + "".join(f", {k} = {_value(v)}" for k, v in params.items())
    rows = {"objective": objective, **params, "base model": base_model}
    rows |= {"reference (pi0)": reference or base_model, "data": data, "trainer": trainer}
    rows |= extra or {}
    tags = sorted({"giftlab", objective, "gift" if objective.startswith("gift") else "sft"})
    lines = [
        "---",
        f"base_model: {base_model}",
        "library_name: transformers",
        "tags:",
        *[f"- {t}" for t in tags],
        "---",
        "",
        f"# Fine-tuned from {base_model} ({label})",
        "",
        f"Trained with giftlab's {trainer} towards {what}.",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {_value(v)} |" for k, v in rows.items()],
    ]
    if selection:
        lines += ["", selection]
    return "\n".join(lines) + "\n"
