"""Files: atomic writes (a file is either the old version or the complete new one, never half),
reading JSON data files with errors that name the line, removing temporary files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fishdip.errors import DataError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path | str, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_file(path: Path | str) -> None:
    """Remove a temporary file (a checkpoint, a journal) and its folder once that is empty."""
    path = Path(path)
    path.unlink(missing_ok=True)
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()


def write_json_atomic(path: Path | str, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: Path | str, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_json(path: Path | str) -> Any:
    """Parse a JSON data file; problems become a DataError naming the file and line."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
        if not text.strip():
            raise DataError(f"{path}: empty file")
        return json.loads(text)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})") from None


def iter_jsonl(path: Path | str):
    """(line number, object) for every non-blank line; a bad line is a DataError naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number}: expected an object")
        yield number, row


def read_jsonl(path: Path | str) -> list[dict]:
    """One JSON object per line (blank lines skipped); a bad line is a DataError naming it."""
    return [row for _, row in iter_jsonl(path)]
