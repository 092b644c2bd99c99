"""Generated batches kept while an evaluation runs, so that a stopped one continues.

Writing all 288 CoNLL04 test sentences takes from minutes to over an hour on a CPU (in-context
learning's long prompts; free decoding running to the budget), and whatever runs when a session
ends is stopped with it. Without a journal, the continued run trained nothing again (its training
checkpoint holds the final state) but generated every sentence again.

The runner hands generation a journal (``Journal.open``): each finished batch is appended to a
JSONL file beside the episode's training checkpoint, keyed by what it was generated from
(``batch_key``: the stage and the batch's sources, so another batch size or evaluation split
finds nothing); a continued run takes the batches it finds and generates the rest. Batches are
generated independently of each other, so the texts are those an uninterrupted run writes.

The first line says what wrote the file: the run's identity, the episode and a checksum of the
model's weights. A journal of another run or another model is started anew (a model trained again
from the start after its checkpoint was lost is another model). A line cut by a kill is ignored.
The runner removes the journal with the checkpoint once the episode's results are written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fishdip.io import remove_file, write_text_atomic

VERSION = 1


def batch_key(stage: str, sources: list[str]) -> str:
    """What identifies one generated batch: the generation stage (e.g. triggers or arguments) and
    its sources, in order."""
    return hashlib.sha256(json.dumps([stage, sources], ensure_ascii=False).encode()).hexdigest()


@dataclass
class Journal:
    path: Path
    identity: dict
    batches: dict[str, dict] = field(default_factory=dict)  # key -> {"texts": [...], "hit_limit": [...]}

    @classmethod
    def open(cls, path: str | Path, identity: dict, log=print) -> Journal:
        """The journal at ``path`` if it was written for ``identity`` (the batches it holds), else a
        new one there (what the old file held is said in the log and dropped)."""
        journal = cls(Path(path), json.loads(json.dumps(identity)))  # as it reads back from the file
        if journal.path.exists() and not journal._read():
            log(f"warning: {journal.path}: generations of another run or model; generating anew")
        if journal.batches:
            log(f"continuing the evaluation: {len(journal.batches)} batch(es) generated before the stop "
                f"are taken from {journal.path}")
        # written anew with what it holds: a line cut by a kill must not stay before new ones
        rows = [{"journal": VERSION, "identity": journal.identity}]
        rows += [{"key": key, **batch} for key, batch in journal.batches.items()]
        write_text_atomic(journal.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return journal

    def _read(self) -> bool:
        """Load the batches of the file if it was written for this identity (False: it was not)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return False
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill (the last): nothing after it was written
                break
        if not rows or rows[0] != {"journal": VERSION, "identity": self.identity}:
            return False
        for row in rows[1:]:
            if isinstance(row, dict) and {"key", "texts", "hit_limit"} <= row.keys():
                self.batches[row["key"]] = {"texts": row["texts"], "hit_limit": row["hit_limit"]}
        return True

    def get(self, key: str) -> dict | None:
        return self.batches.get(key)

    def add(self, key: str, texts: list[str], hit_limit: list[bool]) -> None:
        """Append one finished batch, on disk before generation goes on (a kill loses at most the
        batch in progress)."""
        self.batches[key] = batch = {"texts": list(texts), "hit_limit": [bool(h) for h in hit_limit]}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, **batch}, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        remove_file(self.path)
