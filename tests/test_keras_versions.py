"""The shipped model loads on every Keras the package accepts, and a file that a newer Keras
saved says so when this Keras cannot read it (issue 27, class 6).

Keras 3.15 writes settings that Keras 3.10-3.14 refuse as unexpected arguments (`input_axes`
of the initializers, `quantization_config` of Dense, BatchNormalization's renorm settings).
`release.save_portable` leaves them out where they hold their default value, so the shipped
file keeps its weights' bytes and older Keras reads it; `.ci/lowest_stack.sh` loads it and
predicts on a real photo at TensorFlow 2.19.1 / Keras 3.10.0. Here, without that stack: the
shipped file holds none of those settings, saving that way changes no prediction, and a file
claiming a future Keras with a setting this Keras does not know gets the version message.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from c3ae_utils import inference, network, release
from c3ae_utils.network import weight_files

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / release.KERAS_FILE
TWO_PEOPLE = Path("demo") / "ageitgey_face_recognition" / "two_people.jpg"
UPGRADE = "upgrade Keras (pip install -U keras)"


def _entries(path: Path) -> dict[str, bytes]:
    """The entries of a `.keras` archive: name -> bytes."""
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path: Path, **changes: Callable[[dict], dict]) -> None:
    """Rewrite JSON entries of the `.keras` archive `path`: `changes` maps an entry's stem
    ("config", "metadata") to a function of its parsed JSON that returns the new one."""
    entries = _entries(path)
    for stem, change in changes.items():
        entries[f"{stem}.json"] = json.dumps(change(json.loads(entries[f"{stem}.json"]))).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def _tiny_model() -> keras.Model:
    """A Functional model with a GlorotUniform kernel: [batch, 2] -> [batch, 1]."""
    features = keras.Input((2,), name="features")
    return keras.Model(features, keras.layers.Dense(1, name="out")(features), name="tiny")


def _with_initializer_argument(config: dict, name: str, value: object) -> dict:
    """`config` with `name: value` added to the config of every GlorotUniform in it."""
    text = json.dumps(config)
    marker = '"class_name": "GlorotUniform", "config": {'
    assert marker in text
    return json.loads(text.replace(marker, f'{marker}"{name}": {json.dumps(value)}, '))


@pytest.fixture()
def future_file(tmp_path: Path) -> Path:
    """A tiny `.keras` whose metadata claims Keras 99.0.1 and whose initializer has a setting
    this Keras does not know (what Keras 3.10 meets in a file Keras 3.15 saved)."""
    path = tmp_path / "future.keras"
    _tiny_model().save(path)
    _rewrite(path, config=lambda config: _with_initializer_argument(config, "future_axes", [0]),
             metadata=lambda metadata: {**metadata, "keras_version": "99.0.1"})
    return path


def test_the_oldest_keras_of_the_release_is_the_floor_of_pyproject() -> None:
    floor = re.search(r'"keras>=([\d.]+)', (REPO / "pyproject.toml").read_text())
    assert floor is not None and floor.group(1) == release.OLDEST_KERAS


def test_the_shipped_file_holds_no_setting_that_older_keras_refuses() -> None:
    entries = _entries(SHIPPED)
    config = json.loads(entries["config.json"])
    assert release.portable_config(config) == config  # nothing left to leave out
    text = entries["config.json"].decode()
    for setting in ("input_axes", "output_axes", "quantization_config", "renorm"):
        assert f'"{setting}"' not in text, setting
    assert weight_files.saved_keras_version(SHIPPED) == json.loads(entries["metadata.json"])["keras_version"]


def test_portable_config_leaves_out_only_default_values() -> None:
    glorot = {"module": "keras.initializers", "class_name": "GlorotUniform",
              "config": {"seed": 3, "input_axes": None, "output_axes": [1]}}
    norm = {"module": "keras.layers", "class_name": "BatchNormalization",
            "config": {"momentum": 0.9, "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.5}}
    ours = {"module": "c3ae_utils.network", "class_name": "Dense", "config": {"quantization_config": None}}
    portable = release.portable_config({"layers": [glorot, norm, ours]})
    assert portable["layers"][0]["config"] == {"seed": 3, "output_axes": [1]}  # not the default: kept
    assert portable["layers"][1]["config"] == {"momentum": 0.9, "renorm_momentum": 0.5}
    assert portable["layers"][2] == ours  # not a Keras class: untouched
    assert glorot["config"]["input_axes"] is None and "renorm" in norm["config"]  # the input is not changed


def test_saving_portable_keeps_the_weights_bytes_and_the_predictions(tmp_path: Path) -> None:
    keras.utils.set_random_seed(7)
    model = network.build_c3ae()
    plain, portable = tmp_path / "plain.keras", tmp_path / "portable.keras"
    model.save(plain)
    release.save_portable(model, portable)  # raises unless the file read back predicts the same
    before, after = _entries(plain), _entries(portable)
    assert list(after) == list(before)
    assert after["model.weights.h5"] == before["model.weights.h5"]
    assert json.loads(after["config.json"]) == release.portable_config(json.loads(before["config.json"]))
    assert b'"input_axes"' not in after["config.json"]
    crops = np.random.default_rng(1).integers(0, 256, (3, 3, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(network.predict_ages(network.load_model(portable), crops)["age"],
                                  network.predict_ages(model, crops)["age"])


def test_a_file_from_a_newer_keras_says_to_upgrade_keras(future_file: Path) -> None:
    with pytest.raises(ValueError) as caught:
        network.load_model(future_file)
    message = str(caught.value)
    assert message.startswith(f"{future_file} was saved by Keras 99.0.1, this is Keras {keras.__version__}")
    assert "future_axes" in message and message.endswith(UPGRADE + ".")
    assert "Give C3AE weights" not in message and "\n" not in message


def test_the_same_damage_from_this_keras_is_not_blamed_on_the_version(future_file: Path) -> None:
    _rewrite(future_file, metadata=lambda metadata: {**metadata, "keras_version": keras.__version__})
    with pytest.raises(ValueError) as caught:
        network.load_model(future_file)
    assert "cannot be loaded as a Keras model" in str(caught.value) and UPGRADE not in str(caught.value)


def test_predict_with_weights_from_a_newer_keras_is_one_line(future_file: Path, mirror: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(mirror / TWO_PEOPLE), "--weights", str(future_file), "--output", str(tmp_path / "out")]
    assert inference.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("c3ae predict: error: ") and UPGRADE in lines[0]


@pytest.mark.parametrize(("text", "numbers"), [("3.15.1", (3, 15, 1)), ("3.16.0.dev2026", (3, 16, 0)),
                                               ("3.10", (3, 10)), ("unknown", ())])
def test_version_numbers(text: str, numbers: tuple[int, ...]) -> None:
    assert weight_files.version_numbers(text) == numbers


def test_the_saving_keras_is_read_from_archives_and_keras3_h5(tmp_path: Path) -> None:
    model = _tiny_model()
    model.save(tmp_path / "tiny.keras")
    model.save(tmp_path / "tiny.h5")
    (tmp_path / "notes.keras").write_text("not an archive")
    assert weight_files.saved_keras_version(tmp_path / "tiny.keras") == keras.__version__
    assert weight_files.saved_keras_version(tmp_path / "tiny.h5") == keras.__version__
    assert weight_files.saved_keras_version(tmp_path / "notes.keras") is None
