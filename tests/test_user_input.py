"""What users bring is checked before it is used: each case is one clear line (exit 2 on the command
line, a ``FishdipError`` in Python), never a traceback from deep inside or a silent wrong run."""

import json
import shutil

import pytest

import fishdip
from fishdip.cli import main
from fishdip.errors import FishdipError
from tests.conftest import FIXTURES, make_tiny_t5


def _one_line(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _conll_copy(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "conll03", data / "conll03")
    return data


def _train(tmp_path, tiny_model_dir, data, method="fish-dip", *extra):
    out = tmp_path / "run"
    try:
        main(["train", "--task", "conll03", "--data-dir", str(data), "--model", str(tiny_model_dir), "--method",
              method, "--train-size", "4", "--epochs", "1", "--batch-size", "2", "--max-length", "48",
              "--eval-limit", "3", "--output-dir", str(out), "--quiet", *extra])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out


@pytest.mark.integration
def test_predict_on_a_truncated_delta_is_one_line(tmp_path, tiny_model_dir, capsys):
    out = _train(tmp_path, tiny_model_dir, FIXTURES)
    delta = out / "models" / "episode-1" / "delta.safetensors"
    delta.write_bytes(delta.read_bytes()[:200])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # (the base model's loading bar is on stderr too)
        main(["predict", "--model", str(out), "Anna lives in Rome ."])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith(f"error: {delta}: not a readable delta")


def test_a_nul_byte_in_a_conll_file_is_one_line(tmp_path, capsys):
    data = _conll_copy(tmp_path)
    train = data / "conll03" / "train.txt"
    lines = train.read_text().splitlines()
    lines[2] = lines[2].replace(" ", "\x00 ", 1)
    train.write_text("\n".join(lines) + "\n")
    err = _one_line(["train", "--task", "conll03", "--data-dir", str(data), "--output-dir",
                     str(tmp_path / "run")], capsys)
    assert f"{train}: line 3: a NUL byte" in err and not (tmp_path / "run").exists()


def test_a_model_pair_without_a_tokenizer_is_refused(tmp_path):
    tiny = make_tiny_t5()
    with pytest.raises(FishdipError, match=r"model=\(T5ForConditionalGeneration, NoneType\): expected \(a "
                                           r"transformers model, its tokenizer\)"):
        fishdip.train(examples=[{"tokens": ["a"]}], eval_examples=[{"tokens": ["a"]}], model=(tiny.model, None),
                      output_dir=str(tmp_path / "x"))


def test_in_memory_tokens_given_as_a_string_are_refused(tmp_path):
    with pytest.raises(FishdipError, match=r"examples\[0\]: 'tokens' is a string; give a list of tokens"):
        fishdip.train(examples=[{"tokens": "John lives in Rome .", "entities": []}],
                      eval_examples=[{"tokens": ["a"]}], output_dir=str(tmp_path / "x"))


@pytest.mark.integration
def test_predict_with_batch_size_0_is_one_clear_error(tmp_path, tiny_model_dir):
    out = _train(tmp_path, tiny_model_dir, FIXTURES, "full")
    with pytest.raises(FishdipError, match="--batch-size 0: must be >= 1"):
        fishdip.load(out).predict("Anna lives in Rome .", batch_size=0)


def test_a_run_folder_whose_config_is_not_an_object_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("[1, 2, 3]")
    err = _one_line(["train", "--task", "conll03", "--data-dir", str(FIXTURES), "--output-dir", str(out)], capsys)
    assert f"{out / 'config.json'}: not a fishdip run config" in err


@pytest.mark.integration
def test_rescore_against_other_data_than_the_run_read_is_refused(tmp_path, tiny_model_dir, capsys):
    data = _conll_copy(tmp_path)
    out = _train(tmp_path, tiny_model_dir, data, "full")
    test_file = data / "conll03" / "test.txt"
    lines = test_file.read_text().splitlines()
    lines[0] = lines[0].replace(" O", " B-ORG") if lines[0].endswith(" O") else lines[0] + "x"  # one line changed
    test_file.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    err = _one_line(["rescore", str(out)], capsys)
    assert f"{test_file}: not the file the run in {out} read (its checksum differs" in err


def test_a_folder_fishdip_did_not_write_is_refused_before_anything_is_created_in_it(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "results.json").write_text(json.dumps({"my": "numbers"}))
    err = _one_line(["train", "--task", "conll03", "--data-dir", str(FIXTURES), "--output-dir", str(foreign)],
                    capsys)
    assert "holds results.json but no config.json: not a fishdip run folder" in err
    assert sorted(p.name for p in foreign.iterdir()) == ["results.json"]  # no .fishdip.lock left behind
