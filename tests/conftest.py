import os

# Tests never reach a model hub (they build tiny models from configs); subprocesses inherit this.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
if not os.environ.get("CUDA_VISIBLE_DEVICES") and not os.path.exists("/dev/nvidia0"):
    # no GPU: Triton kernels run in Triton's interpreter (set before triton is first imported)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run) is derandomised: the same examples every run.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

EPS = np.finfo(np.float64).eps


# -- tiny models and data, shared by the trainer, run-folder and RL tests ------------------------


@pytest.fixture(scope="session")
def tok():
    from giftlab.models import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture
def data_files(tmp_path):
    from tests.helpers import write_jsonl

    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(6) for b in range(4)]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:20])
    val = write_jsonl(tmp_path / "val.jsonl", rows[20:])
    return train, val


@pytest.fixture
def model_factory(tok):
    from giftlab.models import tiny_llama

    return lambda seed=0: tiny_llama(len(tok), seed=seed)


@pytest.fixture(autouse=True, scope="session")
def toy_verifier():
    """The tests' own task, registered as a user would: 'toy' is correct when the completion
    starts with 'a' (tests that need another rule pass score_fn or monkeypatch the score)."""
    from giftlab.data.verifiers import register_verifier

    register_verifier("toy", lambda record, completion: float(completion.startswith("a")))
