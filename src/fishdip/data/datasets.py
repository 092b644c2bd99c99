"""Dataset registry: which files make up each dataset and how to read them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fishdip.data.spert import read_spert, read_types
from fishdip.errors import DataError
from fishdip.formats.entity_relation import Example, Schema
from fishdip.paths import data_roots


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    family: str  # task family, selects format and metrics
    splits: dict[str, str]  # split -> file name; "{fold}" is filled from --fold
    types_file: str
    source: str  # where the public files come from
    folds: int = 0  # >0: the dataset ships cross-validation folds 0..folds-1

    def file_name(self, split: str, fold: int = 0) -> str:
        if split not in self.splits:
            raise DataError(
                f"dataset {self.name} has no {split!r} split (it has: {', '.join(self.splits)})"
            )
        if self.folds and not 0 <= fold < self.folds:
            raise DataError(f"dataset {self.name}: --fold must be in 0..{self.folds - 1}, got {fold}")
        return self.splits[split].format(fold=fold)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            name="conll04",
            family="joint_er",
            splits={s: f"conll04_{s}.json" for s in ("train", "dev", "test")},
            types_file="conll04_types.json",
            source="SpERT release of CoNLL04 (Roth & Yih 2004), 922/231/288 sentences",
        ),
        DatasetSpec(
            name="ade",
            family="joint_er",
            splits={"train": "ade_split_{fold}_train.json", "test": "ade_split_{fold}_test.json"},
            types_file="ade_types.json",
            source="SpERT release of ADE (Gurulingappa et al. 2012), 10 folds, no dev split",
            folds=10,
        ),
    ]
}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def dataset_dir(spec: DatasetSpec, data_dir: Path | str | None = None) -> Path:
    """The first ``<root>/<dataset>/`` that holds the types file."""
    roots = data_roots(data_dir)
    for root in roots:
        if (root / spec.name / spec.types_file).is_file():
            return root / spec.name
    looked = ", ".join(str(r / spec.name) for r in roots)
    raise DataError(
        f"dataset {spec.name}: {spec.types_file} not found (looked in {looked}). "
        f"Pass --data-dir DIR (holding {spec.name}/), set FISHDIP_DATA_DIR, "
        f"or run `fishdip data fetch {spec.name}`."
    )


def load_schema(name: str, data_dir: Path | str | None = None) -> Schema:
    spec = get_spec(name)
    return read_types(dataset_dir(spec, data_dir) / spec.types_file)


def load_split(
    name: str, split: str, data_dir: Path | str | None = None, fold: int = 0
) -> tuple[list[Example], Schema]:
    """Read one split of a dataset, validated, with its schema."""
    spec = get_spec(name)
    file_name = spec.file_name(split, fold)
    folder = dataset_dir(spec, data_dir)
    schema = read_types(folder / spec.types_file)
    return read_spert(folder / file_name, schema), schema
