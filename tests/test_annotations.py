"""A user's own sentences: doccano, Label Studio and fishdip JSONL exports read into examples, trained on
and predicted from the CLI and the API; a bad export is one line (file, line or task, record) and
nothing is written."""

import json
from pathlib import Path

import pytest

from fishdip.cli import main
from fishdip.data.annotations import FileDataset, detect_format, read_annotated
from fishdip.errors import DataError
from tests.conftest import FIXTURES

EXPORTS = FIXTURES / "annotations"
WITH_RELATIONS = ["doccano_relations.jsonl", "label_studio.json", "plain.jsonl"]


def _structures(path: Path) -> list:
    return [(ex.tokens, [(e.start, e.end, e.type) for e in ex.entities],
             sorted((r.type, r.head.start, r.tail.start) for r in ex.relations)) for _, ex in read_annotated(path)]


def test_every_export_format_reads_to_the_same_sentences():
    assert [detect_format(EXPORTS / f) for f in (*WITH_RELATIONS, "doccano_ner.jsonl")] == \
           ["doccano", "label-studio", "jsonl", "doccano"]
    reference = _structures(EXPORTS / "plain.jsonl")
    for name in WITH_RELATIONS:  # Label Studio's unannotated ninth task is left out
        assert _structures(EXPORTS / name) == reference, name
    ner = _structures(EXPORTS / "doccano_ner.jsonl")
    assert [(t, e) for t, e, _ in ner] == [(t, e) for t, e, _ in reference] and not any(r for *_, r in ner)
    first = reference[0]
    assert first[0] == ["John", "Smith", "works", "for", "Acme", "Corp", "in", "Boston", "."]
    assert first[1] == [(0, 2, "PER"), (4, 6, "ORG"), (7, 8, "LOC")]
    assert first[2] == [("Live_In", 0, 7), ("Work_For", 0, 4)]


def test_the_family_types_and_held_out_part_follow_from_the_data(tmp_path):
    relations = FileDataset(EXPORTS / "label_studio.json")
    assert relations.family == "joint_er" and set(relations.schema().relation_types) == {"Live_In", "Work_For"}
    assert relations.schema().entity_types == {"LOC": "location", "ORG": "organization", "PER": "person"}
    assert len(relations.split("train")) == 6 and len(relations.split("test")) == 2  # round(0.2 x 8) held out
    again = FileDataset(EXPORTS / "label_studio.json")
    assert [ex.id for ex in again.split("test")] == [ex.id for ex in relations.split("test")]  # a fixed seed
    other = FileDataset(EXPORTS / "label_studio.json", split_seed=5)
    assert [ex.id for ex in other.split("test")] != [ex.id for ex in relations.split("test")]
    ner = FileDataset(EXPORTS / "doccano_ner.jsonl", eval_file=EXPORTS / "doccano_ner.jsonl")
    assert ner.family == "ner" and len(ner.split("train")) == len(ner.split("dev")) == 8
    types = tmp_path / "types.json"
    types.write_text(json.dumps({"entities": {"PER": "human", "ORG": "company", "LOC": "place", "MISC": "other"},
                                 "relations": ["Work_For", "Live_In"]}))
    named = FileDataset(EXPORTS / "plain.jsonl", types_file=types)
    assert named.schema().entity_types["PER"] == "human" and named.schema().relation_types["Work_For"] == "work for"


def _write(tmp_path: Path, name: str, lines) -> Path:
    path = tmp_path / name
    if isinstance(lines, str):
        path.write_text(lines)
    elif name.endswith(".json"):  # a Label Studio export: one JSON list
        path.write_text(json.dumps(lines, indent=1))
    else:
        path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def _ls(text, results):
    return [{"id": 7, "data": {"text": text}, "annotations": [{"result": results, "was_cancelled": False}]}]


def _span(rid, start, end, label):
    return {"id": rid, "type": "labels", "value": {"start": start, "end": end, "labels": [label]}}


TEXT = "John Smith works for Acme Corp."
BAD = [
    ("plain.jsonl", [{"text": TEXT, "entities": [{"start": 0, "end": 2, "type": "PER"}]}],
     "plain.jsonl, line 1: span 0-2 'Jo' (PER) does not fall on token boundaries (the tokens there: John)"),
    ("plain.jsonl", [{"text": TEXT, "entities": [{"start": 0, "end": 10, "type": "PER"},
                                                 {"start": 5, "end": 16, "type": "ORG"}]}],
     "plain.jsonl, line 1: spans 'John Smith' (PER) and 'Smith works' (ORG) overlap"),
    ("plain.jsonl", [{"text": "   ", "entities": []}], "plain.jsonl, line 1: empty text"),
    ("plain.jsonl", [{"text": TEXT, "entities": [{"start": 0, "end": 99, "type": "PER"}]}],
     "span 0-99 (PER) lies outside the text's 31 characters"),
    ("plain.jsonl", [{"text": TEXT, "entities": [{"start": 0, "end": 4, "type": "PER"}],
                      "relations": [{"head": 0, "tail": 3, "type": "Work_For"}]}],
     "plain.jsonl, line 1: relation Work_For refers to span '3', which the record does not have"),
    ("doccano.jsonl", [{"id": 1, "text": TEXT, "entities": [{"id": 1, "label": "PER", "start_offset": 0,
                                                              "end_offset": 10}],
                        "relations": [{"id": 0, "from_id": 1, "to_id": 99, "type": "Work_For"}]}],
     "doccano.jsonl, line 1: relation Work_For refers to span '99'"),
    ("doccano.jsonl", '{"text": "fine", "label": []}\n{"text": "broken", "label": [[0, 3, "X"]\n',
     "doccano.jsonl, line 2: not JSON"),
    ("doccano.jsonl", [{"text": TEXT, "label": [[0, "ten", "PER"]]}], "line 1: end 'ten' is not a whole number"),
    ("export.json", _ls(TEXT, [_span("a", 0, 10, "PER"), _span("b", 21, 30, "ORG"),
                               {"type": "relation", "from_id": "a", "to_id": "b", "direction": "bi",
                                "labels": ["Work_For"]}]),
     "export.json, task 1 (id 7): relation a <-> b: bidirectional"),
    ("export.json", _ls(TEXT, [{"id": "a", "type": "labels", "value": {"start": 0, "end": 10,
                                                                       "labels": ["PER", "ORG"]}}]),
     "export.json, task 1 (id 7): span None: 2 labels; one label per span"),
    ("export.json", '{"not": "a list"}', "export.json: a Label Studio JSON export is a list of tasks"),
    ("odd.jsonl", [{"sentence": "no text key"}], "odd.jsonl: cannot tell its format from the first record"),
]


@pytest.mark.parametrize("name, content, message", BAD, ids=[m.split(": ", 1)[-1][:40] for *_, m in BAD])
def test_a_bad_export_is_one_line_exit_2_and_nothing_is_written(name, content, message, tmp_path, capsys):
    path = _write(tmp_path, name, content)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--train-file", str(path), "--model", "embedded", "--output-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err and str(tmp_path) in err, err
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--task", "conll04"], "--train-file: a run on your own file has the task 'file'; leave --task out"),
    (["--dev-fraction", "0.95"], "--dev-fraction 0.95: must be > 0 and <= 0.9"),
    (["--data-format", "brat"], "--data-format 'brat': must be one of auto, doccano, label-studio, jsonl"),
])
def test_bad_file_options_are_one_line(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--train-file", str(EXPORTS / "plain.jsonl"), "--output-dir", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err, err


def test_file_options_without_a_train_file_and_an_unknown_type_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--eval-file", str(EXPORTS / "plain.jsonl"), "--output-dir", str(tmp_path / "r")])
    assert "--eval-file: only with --train-file" in capsys.readouterr().err
    types = _write(tmp_path, "types.json", '{"entities": ["PER", "ORG"]}')
    with pytest.raises(DataError, match=r"plain.jsonl, line 1: entity type 'LOC' is not in .*types.json"):
        FileDataset(EXPORTS / "plain.jsonl", types_file=types)
    few = _write(tmp_path, "one.jsonl", [{"text": TEXT, "entities": []}])
    with pytest.raises(DataError, match="1 annotated record.*would leave none to train on"):
        FileDataset(few)


@pytest.mark.integration
@pytest.mark.parametrize("export", ["doccano_relations.jsonl", "label_studio.json"])
def test_an_export_trains_and_predicts_end_to_end_from_the_cli(export, tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    main_ok(["train", "--train-file", str(EXPORTS / export), "--model", str(tiny_model_dir), "--method",
             "fish-dip", "--epochs", "2", "--batch-size", "2", "--max-length", "64", "--output-dir", str(out),
             "--quiet"])
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "file" and config["dev_fraction"] == 0.2 and config["split_seed"] == 0
    assert list(config["data_files"]) == [str(EXPORTS / export)]
    assert len(config["data_files"][str(EXPORTS / export)]) == 64  # the file's sha256
    results = json.loads((out / "results.json").read_text())
    assert results["episodes"][0]["metrics"]["num_examples"] == 2 and "relation_f1" in results["episodes"][0]["metrics"]
    assert len(results["episodes"][0]["train_indices"]) == 6
    capsys.readouterr()
    main_ok(["predict", "--model", str(out), "Anna Berg works for Globex ."])
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert row["tokens"] == ["Anna", "Berg", "works", "for", "Globex", "."] and "relations" in row
    main_ok(["evaluate", "--model", str(out), "--eval-file", str(EXPORTS / "plain.jsonl")])
    assert json.loads(capsys.readouterr().out)["num_examples"] == 8


def main_ok(argv):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), exc


@pytest.mark.integration
def test_an_export_trains_from_the_python_api_with_train_size_and_episodes(tmp_path):
    import fishdip
    from tests.conftest import make_tiny_t5

    tiny = make_tiny_t5()
    result = fishdip.train(train_file=str(EXPORTS / "label_studio.json"), eval_file=str(EXPORTS / "plain.jsonl"),
                           model=(tiny.model, tiny.tokenizer), method="full", train_size=4, episodes="1-2",
                           epochs=1, batch_size=2, max_length=64, output_dir=str(tmp_path / "api"), progress=False,
                           log=lambda *_: None)
    episodes = result.runs["full"]["episodes"]
    assert [len(e["train_indices"]) for e in episodes] == [4, 4]
    assert episodes[0]["train_indices"] != episodes[1]["train_indices"]  # each episode its own subset
    assert all(e["metrics"]["num_examples"] == 8 for e in episodes)
