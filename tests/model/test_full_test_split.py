"""The shipped model's card, checked on the whole UTKFace test split (`make test-course`).

The photos of the test split (3,318 faces in the model card) go through the real cache
builder (MTCNN, alignment, crops, on a local Dask cluster) and the shipped model must score
the card's test MAE within 0.05 years: the card's number is reproducible from the photos,
not only from the cache it was measured on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c3ae_utils import datasets, evaluation, faces, release

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def test_split_cache(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> faces.FaceCache:
    """Every UTKFace photo of the test split (the course's split: stratified by decade, seed 0)."""
    table = datasets.load_metadata("utkface")
    table["split"] = datasets.protocol_split(table, "utkface", seed=0)
    table = table[table["split"] == "test"].reset_index(drop=True)
    folder = faces.build_cache(table, tmp_path_factory.mktemp("caches") / "utkface-test", progress=False)
    return faces.load_cache(folder)


@pytest.mark.slow  # 3,318 photos through MTCNN: a minute or two on 2 cores
def test_the_card_reproduces_on_the_whole_test_split(test_split_cache: faces.FaceCache) -> None:
    card = json.loads((MODELS / release.CARD_JSON).read_text())
    measured = evaluation.evaluate("c3ae-utkface", test_split_cache, "test")
    expected = release.shipped_scores(card, "test")  # what the shipped file computes
    assert abs(measured.metrics["count"] - expected["count"]) <= 3  # same photos, same detector
    assert abs(measured.mae - expected["mae"]) <= 0.05, (measured.mae, expected)
