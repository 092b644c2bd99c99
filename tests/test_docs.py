"""The README's and docs/YOUR-DATA.md's examples run as written, so the pages cannot go stale: every
`fishdip ...` line of their shell blocks and every Python block, in order, in a scratch folder that
sees the repository's examples/ and docs/. Three changes make them fast: a tiny random model in
place of the embedded one where an example trains (or loads a model by name), one epoch on at most
4 training sentences, and the first 4 evaluation sentences. Setup lines (venv, pip), the test
command itself and GPU launchers are not run."""

import re
import shlex
from pathlib import Path

import pytest

from fishdip.cli import main
from tests.conftest import REPO, make_tiny_llama, real_data_dir

BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def commands(page: Path) -> list[tuple[str, str]]:
    """(kind, text) in page order: one entry per `fishdip` command line, one per Python block."""
    out = []
    for kind, body in BLOCK.findall(page.read_text()):
        if kind == "python":
            out.append(("python", body))
            continue
        for line in body.splitlines():
            for part in line.split("&&"):  # the setup line chains its install steps before the main job
                part = part.strip().removeprefix(".venv/bin/")
                if part.startswith("fishdip "):
                    out.append(("fishdip", part))
    return out


def _fast(argv: list[str], tiny: Path, data_dir: Path | None) -> list[str]:
    """The command with the tiny model, one epoch and 4 evaluation sentences; --data-dir where the data is."""
    argv = [str(data_dir) if a == "../shared/data" else a for a in argv]
    if argv[0] == "train":
        if "--model" in argv:
            argv[argv.index("--model") + 1] = str(tiny)
        else:
            argv += ["--model", str(tiny)]
        if "--epochs" in argv:
            argv[argv.index("--epochs") + 1] = "1"
        for size in ("--train-fraction", "--train-size"):  # at most 4 training sentences
            if size in argv:
                at = argv.index(size)
                argv[at: at + 2] = ["--train-size", "4"]
        argv += ["--quiet"]
    if argv[0] in ("train", "evaluate") and "--eval-file" not in argv:
        if "--eval-limit" in argv:
            argv[argv.index("--eval-limit") + 1] = "4"
        else:
            argv += ["--eval-limit", "4"]
    if argv[0] == "report":  # never rewrite a committed report
        argv += ["--output", "runs/report"]
    return argv


def _run_page(page: Path, tmp_path: Path, monkeypatch, data_dir: Path | None) -> int:
    tiny = tmp_path / "tiny-llama"
    loaded = make_tiny_llama()
    loaded.model.save_pretrained(tiny)
    loaded.tokenizer.save_pretrained(tiny)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("examples", "docs"):
        (work / name).symlink_to(REPO / name)
    monkeypatch.chdir(work)
    ran = 0
    for kind, text in commands(page):
        if kind == "fishdip":
            argv = _fast(shlex.split(text, comments=True)[1:], tiny, data_dir)
            try:
                main(argv)
            except SystemExit as exc:
                assert exc.code in (0, None), f"{page.name}: `{text}` exited {exc.code}"
        else:
            code = text.replace("../shared/data", str(data_dir)).replace("epochs=30", "epochs=1")
            code = code.replace("fishdip.train(", f"fishdip.train(model={str(tiny)!r}, eval_limit=4, "
                                if "eval_limit" not in code else f"fishdip.train(model={str(tiny)!r}, ")
            exec(compile(code, f"{page.name} python block", "exec"), _namespace(loaded))
        ran += 1
    return ran


def _namespace(loaded) -> dict:
    """What a snippet that says "given a model, its tokenizer and a tokenized dataset" is given."""
    tok = loaded.tokenizer
    rows = []
    for sentence, annotated in [("Oswald lived in Dallas .", "[ Oswald | person ] lived in [ Dallas | location ] ."),
                                ("Smith works for IBM .", "[ Smith | person ] works for [ IBM | organization ] .")]:
        prompt = tok(f"Sentence: {sentence}\nAnnotated:")["input_ids"]
        answer = tok(" " + annotated, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append({"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer})
    return {"model": loaded.model, "tokenizer": tok, "train_dataset": rows, "__name__": "docs_example"}


@pytest.mark.integration
def test_the_your_data_page_runs_as_written(tmp_path, monkeypatch):
    ran = _run_page(REPO / "docs" / "YOUR-DATA.md", tmp_path, monkeypatch, None)
    assert ran == 5  # two trainings, predict, evaluate, the Python block


@pytest.mark.integration
def test_the_readme_examples_run_as_written(tmp_path, monkeypatch, data_dir):
    ran = _run_page(REPO / "README.md", tmp_path, monkeypatch, data_dir)
    assert ran >= 12
    assert (tmp_path / "work" / "runs" / "merged-model" / "config.json").is_file()  # `fishdip export` ran


def test_the_readme_is_short_and_starts_with_its_two_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    blocks = BLOCK.findall(text)
    assert blocks[0][1].startswith("python3 -m venv .venv && ") and "fishdip train" in blocks[0][1]
    assert blocks[1][1].strip() == ".venv/bin/python -m pytest -q"
    ci = (REPO / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in ci  # CI runs the README's test command
    assert real_data_dir is not None
