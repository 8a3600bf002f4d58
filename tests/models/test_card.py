"""Model cards ready to share: the hub id a model came from, no local path, the right tags."""

from giftlab.models.card import card_tags, hub_id, model_card
from giftlab.train import TrainConfig


def _front(card: str) -> str:
    return card.split("---")[1]


def test_the_bundled_model_is_named_by_its_real_hub_id(tmp_path, monkeypatch):
    assert hub_id("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    monkeypatch.setenv("GIFTLAB_CACHE", str(tmp_path))
    converted = tmp_path / "smollm2-135m-instruct"
    converted.mkdir()  # the cache folder a GIFTTrainer or a script is given
    assert hub_id(str(converted)) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = model_card(objective="gift", base_model="smollm2", data="data/x.jsonl", trainer="t")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in _front(card)


def test_a_local_folder_gives_its_name_only_and_a_trained_one_passes_its_id_on(tmp_path):
    plain = tmp_path / "deep" / "my-model"
    plain.mkdir(parents=True)
    card = model_card(
        objective="sft",
        base_model=str(plain),
        data=str(tmp_path / "d.jsonl"),
        trainer="t",
        reference=str(plain),
    )
    assert "base_model" not in _front(card) and str(tmp_path) not in card
    assert "| base model | my-model |" in card and "| data | d.jsonl |" in card
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "README.md").write_text("---\nbase_model: org/base-7b\n---\n")
    card = model_card(objective="sft", base_model=str(trained), data="d", trainer="t")
    assert "base_model: org/base-7b" in _front(card)
    assert hub_id("org/name") == "org/name"


def test_tags_name_the_kind_of_objective():
    assert card_tags("grpo") == ["giftlab", "grpo", "rl"]
    assert card_tags("gift") == ["gift", "giftlab"] and "gift" in card_tags("gift_seq")
    assert "sft" in card_tags("dft") and "distillation" in card_tags("kd_base")
    variant = card_tags("myvariants:half_mix")
    assert "gift-variant" in variant and "sft" not in variant and "myvariants-half_mix" in variant
    assert "gift-variant" in card_tags("mix")  # a registered objective (tests/conftest.py)


def test_the_rl_card_is_tagged_grpo():
    from giftlab.rl.loop import RLConfig

    card = RLConfig(train_file="x.jsonl").model_card()
    assert "- grpo" in _front(card) and "- sft" not in _front(card)
    card = TrainConfig(objective="sft").model_card()
    assert "- sft" in _front(card) and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
