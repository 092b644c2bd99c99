import pytest

from fishdip.data.datasets import load_split
from fishdip.data.multiwoz import read_multiwoz
from fishdip.errors import DataError
from fishdip.formats import dst
from fishdip.structures import DSTExample
from fishdip.tasks import load_task
from fishdip.tasks.options import DataOptions
from tests.conftest import FIXTURES


def test_reader_builds_history_and_drops_untracked_domains():
    examples = read_multiwoz(FIXTURES / "multiwoz21" / "train_dials.json")
    assert len(examples) == 5
    third = examples[2]
    assert third.history.startswith("[user] i need a cheap hotel in the north . [system] the ashley hotel")
    assert third.history.endswith("[user] i also need a train to cambridge leaving after 09:15 .")
    assert "hospital-department" not in third.belief and third.belief["train-leaveat"] == "09:15"


def test_encode_lists_every_slot_of_active_domains():
    text = dst.encode({"hotel-area": "north", "hotel-pricerange": "cheap"})
    assert text.startswith("[belief] hotel area north , hotel book day none , hotel book people none")
    assert "hotel price range cheap" in text and text.endswith("hotel type none [belief]")
    assert text.count(" , ") == len(dst.SLOTS["hotel"]) - 1
    assert dst.encode({}) == "[belief] [belief]"


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_round_trip_every_fixture_turn(split):
    examples, _ = load_split("multiwoz21", split, FIXTURES)
    for ex in examples:
        decoded = dst.decode(dst.encode(ex.belief))
        assert decoded.belief == ex.belief and not decoded.errors


def test_decode_malformed():
    d = dst.decode("[belief] hotel area north , spaceship color red , hotel colour blue , hotel stars [belief]")
    assert d.belief == {"hotel-area": "north"}
    assert d.errors == {"unknown_domain": 1, "unknown_slot": 1, "missing_value": 1}
    assert dst.decode("hotel area north").errors == {"format_error": 1}


def test_joint_goal_and_slot_accuracy_hand_computed():
    golds = [DSTExample("h", {"hotel-area": "north"}), DSTExample("h", {"taxi-leaveat": "09:00"})]
    preds = [dst.DSTDecoded({"hotel-area": "north"}),
             dst.DSTDecoded({"taxi-leaveat": "10:00", "taxi-departure": "station"})]
    m = load_task("multiwoz21", FIXTURES).score(golds, preds)
    assert m["joint_goal_accuracy"] == 0.5
    assert m["slot_accuracy"] == pytest.approx((30 + 28) / 60)


def test_low_resource_sampling_keeps_whole_dialogues():
    task = load_task("multiwoz21", FIXTURES)
    cfg = DataOptions(data_dir=str(FIXTURES), train_size=1)
    train, evaluation, context = task.episode_data(1, cfg)
    (dialogue,) = context["train_dialogues"]
    assert train and all(ex.dialogue == dialogue for ex in train)
    assert len(train) == {"PMUL0001.json": 3, "SNG0002.json": 2}[dialogue]


def test_bad_multiwoz_file(tmp_path):
    path = tmp_path / "train_dials.json"
    path.write_text('[{"dialogue_idx": "x", "dialogue": [{"turn_idx": 0, "system_transcript": ""}]}]')
    with pytest.raises(DataError, match=r"dialogue 0 \(x\), turn 0: missing 'transcript'"):
        read_multiwoz(path)


def test_trade_label_fixes_apply_to_gold_values():
    from fishdip.data.multiwoz import fix_label

    assert fix_label("hotel-area", "center") == "centre"
    assert fix_label("attraction-type", "musuem") == "museum"
    assert fix_label("hotel-type", "bed and breakfast") == "none"  # a value filed under the wrong slot
    assert fix_label("hotel-type", "3 star hotel") == "hotel"
    assert fix_label("restaurant-area", "cambridge") == "none"
    assert fix_label("train-day", "we") == "wednesday"
    assert fix_label("hotel-internet", "free") == "yes"
    assert fix_label("hotel-name", "the ashley hotel") == "the ashley hotel"


def test_reader_applies_the_fixes(tmp_path):
    import json

    dialogue = [{"dialogue_idx": "d1", "domains": ["hotel"], "dialogue": [
        {"turn_idx": 0, "system_transcript": "", "transcript": "a hotel in the center , any price",
         "belief_state": [{"slots": [["hotel-area", "center"]], "act": "inform"},
                          {"slots": [["hotel-pricerange", "any"]], "act": "inform"},
                          {"slots": [["hotel-type", "not mentioned"]], "act": "inform"}]}]}]
    path = tmp_path / "test_dials.json"
    path.write_text(json.dumps(dialogue))
    assert read_multiwoz(path)[0].belief == {"hotel-area": "centre", "hotel-pricerange": "dontcare"}
