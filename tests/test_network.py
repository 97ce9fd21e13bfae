"""The C3AE network: parameter counts, outputs, options, MACs, save/load and the JAX backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from c3ae_utils import age_encoding, network

# Hand-computed multiply-accumulates of one branch: conv1 62*62*32*27, conv2 29*29*32*288,
# conv3 12*12*32*288, conv4 4*4*32*288, conv5 4*4*32*32.
BRANCH_MACS = 3_321_216 + 7_750_656 + 1_327_104 + 147_456 + 16_384
SE_MACS = 5 * (32 * 16 + 16 * 32)


def random_crops(count: int = 4, seed: int = 0) -> np.ndarray:
    """uint8 [count, 3, 64, 64, 3] noise images (structure does not matter for these checks)."""
    return np.random.default_rng(seed).integers(0, 256, (count, 3, 64, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (dict(num_scales=1, use_se=False, conv1_bias=True), 36_377),  # the paper's Table 1
        (dict(num_scales=3, use_se=False, conv1_bias=False), 48_633),  # reference v84
        (dict(num_scales=3, use_se=True, conv1_bias=False), 53_993),  # reference v89
    ],
)
def test_parameter_counts(options: dict, expected: int) -> None:
    assert network.build_c3ae(**options).count_params() == expected


def test_table1_rows_match_the_paper() -> None:
    table = network.table1_comparison(
        network.build_c3ae(num_scales=1, use_se=False, conv1_bias=True)
    )
    assert (table["paper"] == table["ours"]).all(), table
    assert table["ours"].iloc[-1] == network.PAPER_TOTAL_PARAMS
    with_se = network.table1_comparison(network.build_c3ae())
    assert set(with_se["row"]) >= {"SE1", "SE5"}
    assert with_se.set_index("row").loc["SE3", "ours"] == 1072
    assert with_se.set_index("row").loc["conv1", "ours"] == 864


def test_outputs_follow_the_contract() -> None:
    model = network.build_c3ae()
    assert [tensor.name for tensor in model.inputs] == ["crops"]
    assert tuple(model.inputs[0].shape) == (None, 3, 64, 64, 3)
    outputs = model.predict_on_batch(random_crops().astype(np.float32))
    assert set(outputs) == {"distribution", "age"}
    assert outputs["distribution"].shape == (4, 12) and outputs["age"].shape == (4, 1)
    assert outputs["distribution"].dtype == np.float32
    np.testing.assert_allclose(outputs["distribution"].sum(axis=1), 1.0, atol=1e-5)
    # uint8 arrays are fine to feed
    as_uint8 = model(random_crops(), training=False)
    np.testing.assert_allclose(np.asarray(as_uint8["age"]), outputs["age"], atol=1e-4)


def test_branch_is_shared_and_flattens_4x4x32() -> None:
    model = network.build_c3ae(white_norm=False)
    branch = network.get_branch(model)
    assert tuple(branch.output.shape) == (None, 512)
    assert branch.get_layer("conv5").output.shape[1:] == (4, 4, 32)
    crops = random_crops(2).astype(np.float32)
    features = keras.Model(model.inputs, model.get_layer("features").output).predict_on_batch(crops)
    for scale in range(3):
        np.testing.assert_allclose(
            features[:, 512 * scale : 512 * (scale + 1)],
            branch.predict_on_batch(crops[:, scale]),
            rtol=1e-5,
            atol=1e-5,
        )


def test_single_scale_uses_the_outer_crop_only() -> None:
    model = network.build_c3ae(num_scales=1, use_se=False, conv1_bias=True)
    crops = random_crops(2)
    changed_inner = crops.copy()
    changed_inner[:, 1:] = 0
    changed_outer = crops.copy()
    changed_outer[:, 0] = 0
    base = model.predict_on_batch(crops.astype(np.float32))["distribution"]
    same = model.predict_on_batch(changed_inner.astype(np.float32))["distribution"]
    other = model.predict_on_batch(changed_outer.astype(np.float32))["distribution"]
    np.testing.assert_array_equal(base, same)
    assert np.abs(base - other).max() > 1e-4


def test_fixed_w2_is_the_bin_values_and_stays_fixed() -> None:
    keras.utils.set_random_seed(0)
    model = network.build_c3ae(learn_w2=False)
    age_layer = model.get_layer("age")
    assert not age_layer.trainable
    np.testing.assert_array_equal(age_layer.kernel.numpy().ravel(), age_encoding.bin_values())
    np.testing.assert_array_equal(age_layer.bias.numpy(), [0.0])
    outputs = model.predict_on_batch(random_crops().astype(np.float32))
    np.testing.assert_allclose(
        outputs["age"].ravel(), age_encoding.decode(outputs["distribution"]), atol=1e-4
    )
    # one training step moves W1 but not W2
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss={"age": "mae", "distribution": "kl_divergence"},
        run_eagerly=True,  # one step: tracing a graph would cost more than it saves
    )
    w1_before = model.get_layer("distribution").kernel.numpy().copy()
    ages = np.array([20.0, 35.0, 50.0, 64.0], dtype=np.float32)
    targets = {"age": ages[:, None], "distribution": age_encoding.encode(ages)}
    model.fit(random_crops().astype(np.float32), targets, epochs=1, batch_size=4, verbose=0)
    np.testing.assert_array_equal(age_layer.kernel.numpy().ravel(), age_encoding.bin_values())
    assert np.abs(model.get_layer("distribution").kernel.numpy() - w1_before).max() > 0


def test_w2_initialisation_options() -> None:
    at_bins = network.build_c3ae(w2_init="bins").get_layer("age")
    assert at_bins.trainable
    np.testing.assert_array_equal(at_bins.kernel.numpy().ravel(), age_encoding.bin_values())
    keras.utils.set_random_seed(1)
    at_random = network.build_c3ae(w2_init="random").get_layer("age")
    assert at_random.trainable
    assert np.abs(at_random.kernel.numpy()).max() < 1.0  # Glorot uniform for a 12 x 1 kernel


def test_white_norm_and_bgr_order() -> None:
    crops = random_crops(3)
    normed = network.branch_inputs(network.build_c3ae(white_norm=True), crops, scale=2)
    np.testing.assert_allclose(normed, (crops[:, 2].astype(np.float32) - 127.5) / 128.0, atol=1e-6)
    rgb = network.build_c3ae(input_order="rgb", white_norm=False)
    bgr = network.build_c3ae(input_order="bgr", white_norm=False)
    bgr.set_weights(rgb.get_weights())
    flipped = crops[..., ::-1].astype(np.float32)
    np.testing.assert_allclose(
        bgr.predict_on_batch(crops.astype(np.float32))["age"],
        rgb.predict_on_batch(flipped)["age"],
        rtol=1e-5,
        atol=1e-4,
    )


def test_se_channel_scales_shapes() -> None:
    model = network.build_c3ae()
    scales = network.se_channel_scales(model, random_crops(2), scale=1)
    assert list(scales) == ["se1", "se2", "se3", "se4", "se5"]
    for values in scales.values():
        assert values.shape == (2, 32)
        assert np.all((values > 0) & (values < 1))
    with pytest.raises(ValueError, match="no SE blocks"):
        network.se_channel_scales(network.build_c3ae(use_se=False), random_crops(1))


def test_macs_per_branch_and_model() -> None:
    plain = network.build_c3ae(use_se=False)
    assert network.count_macs(network.get_branch(plain)) == BRANCH_MACS
    assert BRANCH_MACS == pytest.approx(network.PAPER_MACC_PER_BRANCH, rel=0.01)
    assert network.count_macs(plain) == 3 * BRANCH_MACS + 1536 * 12 + 12
    with_se = network.build_c3ae(use_se=True)
    assert network.count_macs(network.get_branch(with_se)) == BRANCH_MACS + SE_MACS
    single = network.build_c3ae(num_scales=1, use_se=False, conv1_bias=True)
    assert network.count_macs(single) == BRANCH_MACS + 512 * 12 + 12


def test_macs_table_adds_up() -> None:
    model = network.build_c3ae(use_se=True)
    table = network.macs_table(model)
    assert table["macs"].sum() == network.count_macs(model)
    rows = table.set_index("layer")
    assert rows.loc["branch/conv2", "calls"] == 3
    assert rows.loc["branch/conv2", "macs"] == 3 * 7_750_656
    assert rows.loc["distribution", "calls"] == 1


def test_summary_table_adds_up() -> None:
    model = network.build_c3ae()
    table = network.summary_table(model)
    assert list(table.columns) == ["layer", "type", "output_shape", "params"]
    assert table["params"].sum() == model.count_params() == 53_993
    assert "branch/se5_expand" in set(table["layer"])
    assert table.set_index("layer").loc["features", "output_shape"] == "(None, 1536)"


def test_save_and_reload_without_custom_objects(tmp_path: Path) -> None:
    keras.utils.set_random_seed(2)
    model = network.build_c3ae(input_order="bgr", white_norm=True, learn_w2=False)
    path = tmp_path / "c3ae.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    crops = random_crops(5).astype(np.float32)
    before, after = model.predict_on_batch(crops), reloaded.predict_on_batch(crops)
    for name in ("age", "distribution"):
        np.testing.assert_array_equal(before[name], after[name])
    assert reloaded.count_params() == model.count_params()
    assert not reloaded.get_layer("age").trainable


def test_runs_under_the_jax_backend(tmp_path: Path) -> None:
    keras.utils.set_random_seed(3)
    model = network.build_c3ae(input_order="bgr")
    crops = random_crops(3).astype(np.float32)
    np.save(tmp_path / "crops.npy", crops)
    model.save(tmp_path / "model.keras")
    network.with_flip_averaging(model).save(tmp_path / "flip.keras")  # the shipped model's form
    expected = model.predict_on_batch(crops)["age"]
    expected_flip = network.predict_ages(model, crops, flip=True)["age"]
    script = (
        "import json, sys, numpy as np, keras\n"
        "from c3ae_utils import network\n"
        "assert keras.backend.backend() == 'jax', keras.backend.backend()\n"
        "fresh = network.build_c3ae(num_scales=3, use_se=True)  # built, not run: one XLA compile less\n"
        "loaded = keras.saving.load_model(sys.argv[1] + '/model.keras')\n"
        "out = loaded.predict_on_batch(np.load(sys.argv[1] + '/crops.npy'))\n"
        "assert out['distribution'].shape == (3, 12), out['distribution'].shape\n"
        "age = out['age']\n"
        "flip = network.load_model(sys.argv[1] + '/flip.keras')\n"
        "flip_age = network.predict_ages(flip, np.load(sys.argv[1] + '/crops.npy'))['age']\n"
        "print(json.dumps({'count': fresh.count_params(), 'age': np.asarray(age).ravel().tolist(),\n"
        "                  'flip_age': flip_age.tolist()}))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    assert reported["count"] == 53_993
    np.testing.assert_allclose(reported["age"], expected.ravel(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(reported["flip_age"], expected_flip, rtol=1e-4, atol=1e-3)


def test_flip_averaging_inside_the_model_matches_predict_ages_flip(tmp_path: Path) -> None:
    model = network.core_network(network.load_model())  # trained: mirroring changes its answers
    wrapped = network.with_flip_averaging(model)
    assert wrapped.count_params() == model.count_params()  # the same weights, called twice
    assert network.model_signature(wrapped) == network.model_signature(model)
    crops = random_crops(5)
    mirrored = crops[:, :, :, ::-1]  # every crop mirrored left-right
    by_hand = (model.predict_on_batch(crops.astype(np.float32))["age"][:, 0]
               + model.predict_on_batch(mirrored.astype(np.float32))["age"][:, 0]) / 2
    inside = network.predict_ages(wrapped, crops)
    np.testing.assert_allclose(inside["age"], by_hand, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(inside["distribution"], network.predict_ages(model, crops, flip=True)["distribution"],
                               atol=1e-6)
    assert np.abs(inside["age"] - network.predict_ages(model, crops)["age"]).max() > 0.1
    wrapped.save(tmp_path / "flip.keras")
    reloaded = network.load_model(tmp_path / "flip.keras")  # MirrorCrops is registered
    np.testing.assert_allclose(network.predict_ages(reloaded, crops)["age"], inside["age"], atol=1e-6)
    assert network.core_network(reloaded).name == model.name and network.core_network(model) is model
    assert network.get_branch(reloaded).name == network.BRANCH_NAME


@pytest.mark.parametrize(
    "options",
    [dict(num_scales=4), dict(input_order="bgra"), dict(w2_init="zeros"), dict(num_bins=1)],
)
def test_invalid_options_raise(options: dict) -> None:
    with pytest.raises(ValueError):
        network.build_c3ae(**options)


def test_predict_ages_matches_the_model_in_uneven_padded_batches() -> None:
    model = network.build_c3ae(use_se=False)
    crops = np.random.default_rng(1).integers(0, 256, (7, 3, 64, 64, 3), dtype=np.uint8)
    result = network.predict_ages(model, crops, batch_size=3)  # batches of 2 + 2 + 2 + 1 padded
    direct = model.predict_on_batch(crops.astype(np.float32))
    assert result["age"].shape == (7,) and result["distribution"].shape == (7, 12)
    np.testing.assert_allclose(result["age"], direct["age"][:, 0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(result["distribution"], direct["distribution"], rtol=1e-5, atol=1e-6)
    empty = network.predict_ages(model, crops[:0])
    assert empty["age"].shape == (0,) and empty["distribution"].shape == (0, 12)
    with pytest.raises(ValueError, match=r"\[n, 3, 64, 64, 3\]"):
        network.predict_ages(model, random_crops(2)[:, 0])
    with pytest.raises(ValueError, match="batch_size"):
        network.predict_ages(model, crops, batch_size=0)
