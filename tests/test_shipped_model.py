"""The course's shipped model (`models/`): it loads without training anything, has the C3AE
signature, is the default of every entry point, its float16 TFLite twin agrees with it, and
its model card states what it scores (the test rows of the small cache, measured here;
the full test split is checked by `make test-course`, tests/model/). `c3ae predict` without
`--weights` using it is checked with the rest of the command (test_inference.py)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from c3ae_utils import evaluation, inference, network, release

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((MODELS / release.CARD_JSON).read_text())


def test_the_shipped_files_are_small_and_load_without_training() -> None:
    for name in (release.KERAS_FILE, release.TFLITE_FILE):
        size = (MODELS / name).stat().st_size
        assert 50_000 < size < release.MAX_BYTES, (name, size)
    model = network.load_model("c3ae-utkface")  # raises unless the signature is the C3AE one
    inputs, outputs = network.model_signature(model)
    assert inputs == network.EXPECTED_INPUTS and outputs == network.EXPECTED_OUTPUTS
    assert model.count_params() == 53_993  # the SE model of the paper's size
    with zipfile.ZipFile(MODELS / release.KERAS_FILE) as archive:  # shipped for inference:
        assert not json.loads(archive.read("config.json")).get("compile_config")  # no optimizer state


def test_it_is_the_default_and_the_reference_is_one_name_away() -> None:
    assert network.resolve_weights(None) == MODELS / release.KERAS_FILE
    assert inference.AgeEstimator.from_weights().name == "c3ae_utkface"
    assert network.resolve_weights("reference-v89").name == "c3ae_imdb_v89.h5"


def test_the_tflite_twin_agrees_with_the_keras_model(utkface_cache) -> None:
    crops = utkface_cache.crops[:64]
    keras_ages = network.predict_ages(network.load_model(), crops)["age"]
    tflite_ages = network.predict_ages(inference.load_runner(MODELS / release.TFLITE_FILE), crops, batch_size=64)["age"]
    assert np.abs(keras_ages - tflite_ages).max() < 0.1  # float16 weights: well under a tenth of a year


def test_the_card_reproduces_on_the_test_rows_of_the_small_cache(utkface_cache, card) -> None:
    measured = evaluation.evaluate("c3ae-utkface", utkface_cache, "test")
    assert measured.metrics["count"] == card["small_test"]["count"]
    assert abs(measured.mae - card["small_test"]["mae"]) <= 0.05, (measured.mae, card["small_test"])
    baseline = float(np.abs(measured.table["age"] - utkface_cache.select("train").table["age"].mean()).mean())
    assert measured.mae < baseline  # and it beats predicting the training mean on these faces


def test_the_model_card_is_rendered_from_its_numbers(card) -> None:
    text = (MODELS / "README.md").read_text()
    assert text == release.model_card_markdown(card)
    assert "non-commercial research" in text and card["training_command"] in text
    assert f"| test | {card['test']['plain']['count']:,} | {release.shipped_scores(card)['mae']:.2f} |" in text
    for flip in (False, True):  # the shipped file's scores come first, named for what it computes
        text = release.model_card_markdown({**card, "flip_averaging": flip})
        first = "MAE (flip averaging), shipped" if flip else "MAE (the network alone), shipped"
        assert f"| split | faces | {first} |" in text
        assert f"| test | {card['test']['plain']['count']:,} | {card['test']['flip' if flip else 'plain']['mae']:.2f} |" in text
    assert {"by_decade", "by_gender", "by_race"} <= set(card["test_groups"])
    faces = card["data"]["faces"]
    for together in (False, True):  # the card says which splits trained the model, and which were held out
        text = release.model_card_markdown({**card, "training": {**card["training"], "train_on_val": together}})
        assert ("train split only" in text) is not together
        assert (f"together ({faces['train'] + faces['val']:,} faces" in text) is together
        assert ("| validation (trained on: not held out) |" in text) is together


def test_the_shipped_files_are_in_git() -> None:
    """*.keras and *.tflite are ignored elsewhere; the shipped pair must still be committed."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "models"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert {f"models/{release.KERAS_FILE}", f"models/{release.TFLITE_FILE}", "models/README.md",
            f"models/{release.CARD_JSON}"} <= set(listed), listed
