import json
import random
import urllib.error

import pytest

from fishdip.data import fetch as fetch_mod
from fishdip.data.datasets import load_split
from fishdip.data.sampling import sample_indices, subset_size
from fishdip.data.spert import read_spert, read_types
from fishdip.errors import DataError
from tests.conftest import FIXTURES

TYPES = FIXTURES / "ade" / "ade_types.json"


def _write(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize("example,message", [
    ({"tokens": ["a", "b"], "entities": [{"type": "Drug", "start": 1, "end": 3}]}, r"example 1: entity 0 has span"),
    ({"tokens": ["a", "b"], "entities": [{"type": "Pill", "start": 0, "end": 1}]}, r"example 1: entity 0 has unknown"),
    ({"tokens": ["a", "b"], "entities": [{"type": "Drug", "start": 0, "end": 1}],
      "relations": [{"type": "Adverse-Effect", "head": 0, "tail": 4}]}, r"relation 0 tail points at missing entity 4"),
    ({"tokens": ["a"], "relations": [], "entities": [{"start": 0}]}, r"entity 0 needs"),
    ({"tokens": []}, r"example 1: 'tokens' must be"),
])
def test_validation_names_file_example_and_problem(tmp_path, example, message):
    good = {"tokens": ["x"], "entities": [], "relations": []}
    path = _write(tmp_path, [good, example])
    schema = read_types(TYPES)
    with pytest.raises(DataError, match=message) as info:
        read_spert(path, schema)
    assert str(path) in str(info.value)


def test_invalid_json_names_line(tmp_path):
    path = _write(tmp_path, '[\n{"tokens": ["a"]},\n{oops}\n]')
    with pytest.raises(DataError, match=r"bad.json: line 3"):
        read_spert(path, read_types(TYPES))


def test_missing_data_dir_gives_guidance(tmp_path, monkeypatch):
    monkeypatch.delenv("FISHDIP_DATA_DIR", raising=False)
    monkeypatch.setenv("FISHDIP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="fishdip data fetch conll04"):
        load_split("conll04", "train", tmp_path)


def test_ade_has_folds_and_no_dev_split():
    train, schema = load_split("ade", "train", FIXTURES, fold=1)
    assert len(train) == 1 and schema.relation_types == {"Adverse-Effect": "adverse-effect"}
    with pytest.raises(DataError, match="no 'dev' split"):
        load_split("ade", "dev", FIXTURES)
    with pytest.raises(DataError, match=r"fold 12 does not exist \(folds 0..9\)"):
        load_split("ade", "train", FIXTURES, fold=12)


def test_env_data_dir_is_used(monkeypatch):
    monkeypatch.setenv("FISHDIP_DATA_DIR", str(FIXTURES))
    assert len(load_split("ade", "test", None, fold=0)[0]) == 1


def test_subsets_are_seeded_by_episode():
    a, b, c = (sample_indices(922, e, size=46) for e in (1, 1, 2))
    assert a == b and a != c and len(a) == 46 and a == sorted(a)
    assert subset_size(3394, fraction=0.05) == 170
    assert sample_indices(10, 1) == list(range(10))
    with pytest.raises(ValueError):
        subset_size(10, fraction=0.1, size=3)


def test_fetch_verifies_checksums(tmp_path, monkeypatch):
    source = tmp_path / "remote.json"
    source.write_text("[]")
    good = fetch_mod.RemoteFile("x.json", source.as_uri(), fetch_mod.sha256(source))
    monkeypatch.setitem(fetch_mod.SOURCES, "toy", [good])
    folder = fetch_mod.fetch("toy", tmp_path / "data")
    assert (folder / "x.json").read_text() == "[]"
    bad = fetch_mod.RemoteFile("y.json", source.as_uri(), "0" * 64)
    monkeypatch.setitem(fetch_mod.SOURCES, "toy", [bad])
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_mod.fetch("toy", tmp_path / "data")
    assert not (folder / "y.json").exists() and not list(folder.glob(".*part"))


def test_fetch_offline_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fetch_mod.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="offline.*FISHDIP_DATA_DIR"):
        fetch_mod.fetch("conll04", tmp_path)


def test_fetch_sources_match_shared_data(data_dir):
    for remote in fetch_mod.SOURCES["conll04"]:
        assert fetch_mod.sha256(data_dir / "conll04" / remote.name) == remote.sha256


def test_reader_corner_cases_are_one_clear_error_or_read_right(tmp_path):
    from fishdip.data.columns import read_conll
    from fishdip.data.spert import read_spert
    from fishdip.errors import DataError
    from fishdip.formats.entity_relation import Schema

    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffJohn\tB-PER\nSmith\tI-PER\n".encode())
    assert read_conll(bom, "iob2").examples[0].tokens == ["John", "Smith"]  # the BOM is not in the token
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("John B-PER\nSmith\t  I-PER\nsaid \t O\n")
    parsed = read_conll(mixed, "iob2").examples[0]
    assert parsed.tokens == ["John", "Smith", "said"] and [e.end for e in parsed.entities] == [2]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty.txt: empty file"):
        read_conll(empty, "iob2")
    schema = Schema({"Peop": "people"})
    for bad, message in [
        ([{"tokens": ["a", "b"], "entities": [{"type": "Peop", "start": 0.5, "end": 1}]}], "'start' must be an int"),
        ([{"tokens": ["a", "b"], "entities": [{"type": "Peop", "start": "0", "end": 1}]}], "'start' must be an int"),
        ([{"tokens": ["a"], "entities": [{"type": "Peop", "start": 0, "end": 1}],
           "relations": [{"type": "x", "head": True, "tail": 0}]}], "'head' must be an integer"),
        ([], "no examples"),
    ]:
        path = tmp_path / "spert.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(DataError, match=message) as info:
            read_spert(path, schema)
        assert str(path) in str(info.value)
    path.write_text("")
    with pytest.raises(DataError, match="spert.json: empty file"):
        read_spert(path, schema)


def test_ace2005_joint_er_reads_dygie_documents_like_tanl():
    """Document offsets with inclusive ends become sentence spans; a sentence without entities is
    left out (TANL does the same); types get TANL's natural names."""
    train, schema = load_split("ace2005_joint_er", "train", FIXTURES)
    assert [ex.id for ex in train] == ["train-a-0", "train-a-2", "train-b-0", "train-b-1"]
    first, third = train[0], train[1]
    assert [(e.start, e.end, e.type) for e in first.entities] == [(0, 2, "PER"), (4, 6, "ORG"), (7, 8, "GPE")]
    assert [(r.type, r.head.start, r.tail.start) for r in first.relations] == [("ORG-AFF", 0, 4), ("PHYS", 0, 7)]
    assert third.tokens[third.entities[0].start:third.entities[0].end] == ["The", "tank"]
    assert schema.entity_types["GPE"] == "geographical entity" and schema.relation_types["ORG-AFF"] == "employer"


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 1: invalid JSON"),
    ('{"sentences": [["A", "b"]], "ner": [[[0, 2, "PER"]]], "relations": [[]]}', "outside the sentence"),
    ('{"sentences": [["A", "b"]], "ner": [[[0, 0, "Person"]]], "relations": [[]]}', "unknown entity type 'Person'"),
    ('{"sentences": [["A", "b"]], "ner": [[[0, 0, "PER"]]], "relations": [[[0, 0, 1, 1, "PHYS"]]]}',
     "not an entity"),
    ('{"sentences": [["A"]], "ner": []}', "needs 'sentences', 'ner' and 'relations'"),
])
def test_ace2005_joint_er_bad_lines_name_file_and_line(tmp_path, line, message):
    folder = tmp_path / "ace2005_joint_er"
    folder.mkdir()
    (folder / "train.json").write_text(line + "\n")
    with pytest.raises(DataError, match=message) as err:
        load_split("ace2005_joint_er", "train", tmp_path)
    assert "train.json: line 1" in str(err.value)


def _tanl_subset(n: int, fraction: float, episode: int) -> list[int]:
    """TANL's BaseDataset, written out again: seed the global RNG with the episode, shuffle every
    index, keep the first round(fraction * n) (fish_dip.py passes seed=ep_idx)."""
    state = random.getstate()
    try:
        random.seed(episode)
        indices = list(range(n))
        random.shuffle(indices)
        return indices[: round(fraction * n)]
    finally:
        random.setstate(state)


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1])
@pytest.mark.integration
def test_tanl_subsets_are_the_sentences_tanl_trains_on(data_dir, fraction):
    from fishdip.tasks import load_task
    from fishdip.tasks.options import DataOptions

    train_all, _ = load_split("conll04", "train", data_dir)
    task = load_task("conll04", str(data_dir), "fishdip")
    for episode in (1, 2, 3):
        cfg = DataOptions(data_dir=str(data_dir), train_fraction=fraction, subset_sampling="tanl")
        examples, _, context = task.episode_data(episode, cfg)
        expected = _tanl_subset(len(train_all), fraction, episode)
        assert context["train_indices"] == expected
        assert [ex.tokens for ex in examples] == [train_all[i].tokens for i in expected]
        assert len(expected) == {0.01: 9, 0.05: 46, 0.1: 92}[fraction]
        # today's rule draws other sentences: the two are different protocols
        assert set(sample_indices(len(train_all), episode, fraction=fraction)) != set(expected)


@pytest.mark.integration
def test_a_run_resolves_its_dataset_once_and_parses_each_file_once(tmp_path, monkeypatch):
    """A 3-episode run of two methods with a learning curve: the folder is looked up once and each
    of the dataset's files parsed once (the schema, every episode's subset and evaluation split, the
    curve's split and the checksums all read the one resolved ``Dataset``)."""
    import fishdip
    from fishdip.data import datasets
    from tests.conftest import make_tiny_t5

    parsed, looked_up = [], []
    real_read, real_dir = datasets.read_conll, datasets.dataset_dir
    monkeypatch.setattr(datasets, "read_conll", lambda path, *a, **k: parsed.append(path.name) or
                        real_read(path, *a, **k))
    monkeypatch.setattr(datasets, "dataset_dir", lambda *a, **k: looked_up.append(1) or real_dir(*a, **k))
    tiny = make_tiny_t5()
    fishdip.train(task="conll03", data_dir=str(FIXTURES), model=(tiny.model, tiny.tokenizer), method="full,random",
                  episodes="1-3", train_size=4, epochs=1, batch_size=2, max_length=48, eval_every=1, eval_limit=2,
                  save="none", output_dir=str(tmp_path / "run"), progress=False, log=lambda *_: None)
    assert sorted(parsed) == ["test.txt", "train.txt", "valid.txt"] and len(looked_up) == 1
