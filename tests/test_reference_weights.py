"""The reference implementation's Keras 2.2.4 weights, loaded into our Keras 3 network.

Checked through the full pipeline (detect, align, detect again, three crops, model) on
real UTKFace faces and the reference's two portraits, and against deliberately broken
mappings, which must be caught.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from c3ae_utils import datasets, faces, network

V84 = "imdb_focal_loss_c3ae_v84.h5"
V89 = "c3ae_imdb_v89.h5"


@pytest.fixture(scope="module")
def reference_dir(mirror: Path) -> Path:
    return datasets.fetch("reference", progress=False)


@pytest.fixture(scope="module")
def models(reference_dir: Path) -> dict[str, keras.Model]:
    return {name: network.load_reference_h5(reference_dir / name) for name in (V84, V89)}


@pytest.fixture(scope="module")
def utkface_faces(utkface_cache) -> dict[str, np.ndarray | float]:
    """Crops uint8 [n, 3, 64, 64, 3] and ages of the UTKFace adults aged 20-60 in the shared
    cache (detected, aligned and cropped by the course's pipeline), plus the mean age of all
    the other UTKFace adults 20-60 (the "training mean")."""
    table = utkface_cache.table
    adults = table["age"].between(20, 60).to_numpy()
    everyone = datasets.parse_utkface(datasets.fetch("utkface", progress=False) / "UTKFace")
    others = everyone[everyone["age"].between(20, 60) & ~everyone["path"].isin(table["path"])]
    assert adults.sum() >= 60, f"only {adults.sum()} adults in the shared cache"
    return {
        "crops": utkface_cache.crops[adults],
        "ages": table["age"].to_numpy()[adults].astype(np.float32),
        "training_mean": float(others["age"].mean()),
    }


def mae(model: keras.Model, data: dict) -> float:
    predicted = network.predict_ages(model, data["crops"])["age"]
    return float(np.mean(np.abs(predicted - data["ages"])))


def test_both_files_load_with_the_right_architecture(models: dict[str, keras.Model]) -> None:
    assert models[V84].count_params() == 48_633
    assert models[V89].count_params() == 53_993
    branch_v84 = {layer.name for layer in network.get_branch(models[V84]).layers}
    branch_v89 = {layer.name for layer in network.get_branch(models[V89]).layers}
    assert not any(name.startswith("se") for name in branch_v84)
    assert {"se1_expand", "se5_expand"} <= branch_v89
    for model in models.values():
        layer_names = {layer.name for layer in model.layers}
        assert "rgb_to_bgr" in layer_names and "white_norm" not in layer_names
        assert network.get_branch(model).get_layer("conv1").bias is None


def test_arrays_are_copied_exactly(models: dict[str, keras.Model], reference_dir: Path) -> None:
    with h5py.File(reference_dir / V84, "r") as file:
        weights = file["model_weights"]
        np.testing.assert_array_equal(
            network.get_branch(models[V84]).get_layer("conv1").kernel.numpy(),
            weights["model_1/conv1/kernel:0"][()],
        )
        np.testing.assert_array_equal(
            network.get_branch(models[V84]).get_layer("bn3").moving_variance.numpy(),
            weights["model_1/batch_normalization_3/moving_variance:0"][()],
        )
        np.testing.assert_array_equal(
            models[V84].get_layer("distribution").kernel.numpy(),
            weights["conv2d_1/conv2d_1/kernel:0"][()].reshape(1536, 12),
        )
    with h5py.File(reference_dir / V89, "r") as file:
        weights = file["model_weights"]
        np.testing.assert_array_equal(
            network.get_branch(models[V89]).get_layer("se5_expand").kernel.numpy(),
            weights["model_1/dense_10/kernel:0"][()],
        )
        np.testing.assert_array_equal(
            models[V89].get_layer("age").kernel.numpy(), weights["age/age/kernel:0"][()]
        )


def test_v84_conv_head_equals_a_dense_layer(models: dict[str, keras.Model]) -> None:
    """v84's head (reshape to 1x1x1536, 1x1 conv softmax, global max pool) is our Dense."""
    dense = models[V84].get_layer("distribution")
    features = keras.Input((1536,))
    x = keras.layers.Reshape((1, 1, 1536))(features)
    x = keras.layers.Conv2D(12, 1, activation="softmax")(x)
    literal = keras.Model(features, keras.layers.GlobalMaxPooling2D()(x))
    literal.layers[-2].set_weights(
        [dense.kernel.numpy().reshape(1, 1, 1536, 12), dense.bias.numpy()]
    )
    sample = np.random.default_rng(0).normal(size=(8, 1536)).astype(np.float32)
    np.testing.assert_allclose(
        literal.predict_on_batch(sample), np.asarray(dense(sample)), rtol=1e-5, atol=1e-6
    )


def test_portraits_get_the_reference_ages(
    models: dict[str, keras.Model], reference_dir: Path
) -> None:
    # The reference README's drawn ages: 65.3 (timg) and 18.0 (pattern5).
    expected = {"timg.jpg": (55.0, 72.0), "pattern5.jpg": (15.0, 25.0)}
    for name, (low, high) in expected.items():
        result = faces.process_image(reference_dir / name, policy="inference")
        assert result.ok, result.reason
        for model_name, model in models.items():
            age = float(network.predict_ages(model, result.faces[0].crops[None])["age"][0])
            assert low <= age <= high, f"{model_name} gives {name} age {age:.1f}"


def test_utkface_mae_beats_the_mean_predictor(
    models: dict[str, keras.Model], utkface_faces: dict
) -> None:
    ages = utkface_faces["ages"]
    baseline = float(np.mean(np.abs(ages - utkface_faces["training_mean"])))
    oracle = float(np.mean(np.abs(ages - ages.mean())))
    assert oracle > 7.0  # the sample spans 20-60: a constant guess is poor
    for name, model in models.items():
        error = mae(model, utkface_faces)
        predicted = network.predict_ages(model, utkface_faces["crops"])["age"]
        assert error < 0.85 * min(baseline, oracle), (
            f"{name}: MAE {error:.2f} vs mean {baseline:.2f}"
        )
        assert np.corrcoef(predicted, ages)[0, 1] > 0.55, name


def test_unloaded_batchnorm_statistics_are_caught(reference_dir: Path, utkface_faces: dict) -> None:
    for name in (V84, V89):
        model = network.load_reference_h5(reference_dir / name)
        good = mae(model, utkface_faces)
        for index in range(1, 5):  # as if the moving statistics had not been copied
            layer = network.get_branch(model).get_layer(f"bn{index}")
            layer.moving_mean.assign(np.zeros(32, np.float32))
            layer.moving_variance.assign(np.ones(32, np.float32))
        assert mae(model, utkface_faces) > good + 5.0, name


def test_swapped_se_weights_are_caught(reference_dir: Path, utkface_faces: dict) -> None:
    model = network.load_reference_h5(reference_dir / V89)
    good = network.predict_ages(model, utkface_faces["crops"])["age"]
    good_mae = mae(model, utkface_faces)
    branch = network.get_branch(model)
    first, second = branch.get_layer("se1_expand"), branch.get_layer("se2_expand")
    first_weights, second_weights = first.get_weights(), second.get_weights()
    first.set_weights(second_weights)
    second.set_weights(first_weights)
    broken = network.predict_ages(model, utkface_faces["crops"])["age"]
    assert np.abs(broken - good).max() > 10.0
    assert mae(model, utkface_faces) > good_mae + 2.0


def _copy(reference_dir: Path, tmp_path: Path, name: str = V89) -> Path:
    target = tmp_path / name
    shutil.copyfile(reference_dir / name, target)
    return target


def test_missing_array_is_reported(reference_dir: Path, tmp_path: Path) -> None:
    path = _copy(reference_dir, tmp_path)
    name = "batch_normalization_2/moving_mean:0"
    with h5py.File(path, "r+") as file:
        del file[f"model_weights/model_1/{name}"]
    with pytest.raises(
        ValueError, match=f"{name} of /model_weights/model_1 but its array is missing"
    ):
        network.load_reference_h5(path)
    with h5py.File(path, "r+") as file:  # now also drop it from the list of weights
        group = file["model_weights/model_1"]
        group.attrs["weight_names"] = [n for n in group.attrs["weight_names"] if n != name.encode()]
    with pytest.raises(
        ValueError, match="no array batch_normalization_2/moving_mean for branch/bn2"
    ):
        network.load_reference_h5(path)


def test_unused_array_is_reported(reference_dir: Path, tmp_path: Path) -> None:
    path = _copy(reference_dir, tmp_path, V84)
    with h5py.File(path, "r+") as file:
        group = file["model_weights/model_1"]
        group.create_dataset("extra/kernel:0", data=np.zeros((3, 3), np.float32))
        group.attrs["weight_names"] = [*group.attrs["weight_names"], b"extra/kernel:0"]
    with pytest.raises(ValueError, match="left unused.*extra/kernel"):
        network.load_reference_h5(path)


def test_shape_mismatch_is_reported(reference_dir: Path, tmp_path: Path) -> None:
    path = _copy(reference_dir, tmp_path)
    with h5py.File(path, "r+") as file:
        del file["model_weights/age/age/kernel:0"]
        file["model_weights/age"].create_dataset("age/kernel:0", data=np.zeros((13, 1), np.float32))
    with pytest.raises(ValueError, match=r"shape of age/kernel \(13, 1\)"):
        network.load_reference_h5(path)


def test_bad_paths_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fetch"):
        network.load_reference_h5(tmp_path / "absent.h5")
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="model_config"):
        network.load_reference_h5(empty)


def test_crop_order_matches_the_reference(
    models: dict[str, keras.Model], utkface_faces: dict
) -> None:
    """Our crops (outer, middle, inner) feed the reference's inputs in its order: reversing
    them must hurt."""
    reversed_faces = {**utkface_faces, "crops": utkface_faces["crops"][:, ::-1]}
    for name, model in models.items():
        assert mae(model, reversed_faces) > mae(model, utkface_faces) + 0.5, name
