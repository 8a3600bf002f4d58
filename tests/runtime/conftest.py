import pytest

from giftlab.models import tiny_llama, tiny_tokenizer
from tests.train.conftest import write_jsonl


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer()


@pytest.fixture
def data_files(tmp_path):
    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(6) for b in range(4)]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:20])
    val = write_jsonl(tmp_path / "val.jsonl", rows[20:])
    return train, val


@pytest.fixture
def model_factory(tok):
    return lambda seed=0: tiny_llama(len(tok), seed=seed)
