import json

import pytest
from typer.testing import CliRunner

from fishdip.cli import app
from fishdip.data.fewrel import read_fewrel, read_relation_names, relation_names, sample_episode
from fishdip.errors import DataError
from fishdip.formats import relation_classification as rc
from fishdip.runs.config import ExperimentConfig
from fishdip.tasks import FewShotRCTask, load_task
from tests.conftest import make_tiny_t5

EX = rc.RCExample("The Cape Girardeau Bridge crosses the Mississippi River .".split(), (1, 4), (6, 8), "P177")


def test_tanl_relation_classification_format():
    assert rc.source(EX) == ("The [ Cape Girardeau Bridge ] crosses the [ Mississippi River ] . The relationship "
                             "between [ Cape Girardeau Bridge ] and [ Mississippi River ] is")
    assert rc.target(EX, "crosses") == ("relationship between [ Cape Girardeau Bridge ] and "
                                        "[ Mississippi River ] = crosses")


def test_decode_counts_errors():
    names = {"P177": "crosses", "P26": "spouse"}
    assert rc.decode("relationship between [ a ] and [ b ] = Spouse", names).relation == "P26"
    assert rc.decode("relationship between [ a ] and [ b ]", names).errors == {"format_error": 1}
    assert rc.decode("x = married", names).errors == {"unknown_relation_type": 1}


@pytest.mark.integration
def test_round_trip_every_fewrel_instance(data_dir):
    known = read_relation_names(data_dir / "fewrel" / "pid2name.json")
    for file in ("val_wiki.json", "val_pubmed.json"):
        data = read_fewrel(data_dir / "fewrel" / file)
        names = relation_names(data, known)
        for relation, instances in data.items():
            for ex in instances:
                assert rc.decode(rc.target(ex, names[relation]), names).relation == relation
    assert sum(len(v) for v in read_fewrel(data_dir / "fewrel" / "val_wiki.json").values()) == 11200


@pytest.mark.parametrize("n,k", [(5, 1), (5, 5), (10, 1), (10, 5)])
@pytest.mark.integration
def test_episodes_are_seeded_and_disjoint(data_dir, n, k):
    data = read_fewrel(data_dir / "fewrel" / "val_wiki.json")
    ep = sample_episode(data, n, k, 5, seed=3)
    assert len(ep.relations) == n and len(ep.support) == n * k and len(ep.query) == n * 5
    assert not {x.id for x in ep.support} & {x.id for x in ep.query}
    assert [x.id for x in sample_episode(data, n, k, 5, seed=3).query] == [x.id for x in ep.query]
    assert [x.id for x in sample_episode(data, n, k, 5, seed=4).query] != [x.id for x in ep.query]


def test_bad_fewrel_file(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"P1": [{"tokens": ["a", "b"], "h": ["a", "Q1", [[0]]], "t": ["b", "Q2", [[5]]]}]}))
    with pytest.raises(DataError, match=r"relation P1, instance 0: 't' token indices \[5\] outside"):
        read_fewrel(path)
    with pytest.raises(DataError, match="need 6"):
        sample_episode({"P1": []}, 1, 1, 5, 0)


@pytest.mark.integration
def test_accuracy_and_candidate_scoring_with_tiny_model(data_dir):
    task = load_task("fewrel", data_dir)
    assert isinstance(task, FewShotRCTask)
    cfg = ExperimentConfig(task="fewrel", data_dir=str(data_dir), n_way=3, k_shot=1, n_queries=2, eval_limit=None)
    support, query, context = task.episode_data(1, cfg)
    assert len(support) == 3 and len(query) == 6 and len(context["relations"]) == 3
    texts, decoded = task.predict(make_tiny_t5(), query, cfg.generation(), context, progress=False)
    assert all(d.relation in context["relations"] for d in decoded)
    m = task.score(query, decoded)
    assert m["accuracy"] == sum(q.relation == d.relation for q, d in zip(query, decoded)) / 6


@pytest.mark.integration
def test_fewrel_cli_runs_episodes(tmp_path, data_dir, tiny_model_dir):
    folder = tiny_model_dir
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--task", "fewrel", "--method", "full,fish-dip", "--model", str(folder), "--data-dir",
        str(data_dir), "--n-way", "5", "--k-shot", "1", "--queries", "1", "--episodes", "1-2", "--epochs", "1",
        "--max-length", "128", "--output-dir", str(out), "--quiet", "--save", "none"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
    res = json.loads((out / "fish-dip" / "results.json").read_text())
    assert res["aggregate"]["accuracy"]["n"] == 2 and len(res["episodes"][0]["relations"]) == 5


def test_accuracy_hand_computed():
    task = FewShotRCTask("fewrel", "fewshot_rc", names={"P1": "a", "P2": "b"})
    golds = [rc.RCExample(["x"], (0, 1), (0, 1), r) for r in ("P1", "P2", "P1")]
    preds = [rc.RCDecoded("P1"), rc.RCDecoded("P1"), rc.RCDecoded(None, {"format_error": 1})]
    m = task.score(golds, preds)
    assert m["accuracy"] == pytest.approx(1 / 3) and m["errors"] == {"format_error": 1}


@pytest.mark.integration
def test_both_candidate_rankings_are_scored(data_dir):
    task = load_task("fewrel", data_dir)
    cfg = ExperimentConfig(task="fewrel", data_dir=str(data_dir), n_way=3, k_shot=1, n_queries=2, rc_score="mean")
    _, query, context = task.episode_data(1, cfg)
    _, decoded = task.predict(make_tiny_t5(), query, cfg.generation(), context, progress=False)
    assert all(d.relation == d.by_score["mean"] and set(d.by_score) == {"sum", "mean"} for d in decoded)
    m = task.score(query, decoded)
    assert m["accuracy"] == m["accuracy_mean_loss"]
    assert m["accuracy_sum_loss"] == sum(q.relation == d.by_score["sum"] for q, d in zip(query, decoded)) / 6


def test_sum_and_mean_rankings_differ_as_defined():
    from fishdip.evaluation.predict import lowest

    # a long candidate with a lower mean but a higher sum: each ranking picks its own
    sums, counts = [6.0, 4.0], [6, 2]
    assert lowest(sums) == 1 and lowest([s / c for s, c in zip(sums, counts)]) == 0


@pytest.mark.integration
def test_holdout_split_is_disjoint_and_episodes_avoid_meta_relations(data_dir):
    from fishdip.data.fewrel import holdout_split

    task = load_task("fewrel", data_dir)
    data = read_fewrel(data_dir / "fewrel" / "val_wiki.json")
    meta, episodes = holdout_split(list(data))
    assert len(meta) == len(episodes) == 8 and not set(meta) & set(episodes)
    assert holdout_split(list(data)) == (meta, episodes)  # seeded: the same every time
    cfg = ExperimentConfig(task="fewrel", data_dir=str(data_dir), n_way=5, meta_train="holdout", meta_train_size=10)
    for episode in range(1, 6):
        _, _, context = task.episode_data(episode, cfg)
        assert set(context["relations"]) <= set(episodes)
    pairs = task.meta_pairs(cfg)
    assert len(pairs) == 10 and all(" = " in target for _, target in pairs)


@pytest.mark.integration
def test_meta_training_file_must_not_share_relations(tmp_path, data_dir):
    task = load_task("fewrel", data_dir)
    cfg = ExperimentConfig(task="fewrel", data_dir=str(data_dir), meta_train=str(data_dir / "fewrel" / "val_wiki.json"))
    with pytest.raises(DataError, match="disjoint"):
        task.episode_data(1, cfg)


@pytest.mark.integration
def test_meta_training_runs_once_and_is_reused(tmp_path, data_dir, tiny_model_dir):
    folder = tiny_model_dir
    out = tmp_path / "run"
    args = ["train", "--task", "fewrel", "--method", "full,fish-dip", "--model", str(folder), "--data-dir",
            str(data_dir), "--n-way", "3", "--k-shot", "1", "--queries", "1", "--episodes", "1", "--epochs", "1",
            "--max-length", "128", "--meta-train", "holdout", "--meta-train-size", "6", "--output-dir", str(out),
            "--quiet", "--save", "none"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("meta-training on 6 instances") == 1 and "reusing" in result.output
    meta = json.loads((out / "meta-model" / "fishdip.json").read_text())
    assert meta["meta_train"]["meta_train"] == "holdout" and meta["meta_train"]["base_model"] == str(folder)
