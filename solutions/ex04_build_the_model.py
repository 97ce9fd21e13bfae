"""Worked solutions to the exercises of notebook 04 (build the model).

    python -m solutions.ex04_build_the_model [numbers] [--full]
"""

from __future__ import annotations

import sys
from typing import Any

import keras
import numpy as np

import solutions
from c3ae_utils import age_encoding, course, network

MIN_AGE, MAX_AGE = 20, 60  # the adults notebook 04 scores the reference models on (years)


def _adult_faces(small_run: bool) -> tuple[np.ndarray, np.ndarray]:
    """Crops uint8 `[n, 3, 64, 64, 3]` and ages (years) of the cached faces aged 20-60."""
    cache = course.face_cache("utkface", small_run)
    adults = cache.table["age"].between(MIN_AGE, MAX_AGE).to_numpy()
    return cache.crops[adults], cache.table["age"].to_numpy(np.float32)[adults]


def _mae(model: keras.Model, crops: np.ndarray, ages: np.ndarray) -> float:
    """MAE (years) of the model's age head."""
    return float(np.abs(network.predict_ages(model, crops)["age"] - ages).mean())


def exercise_1(small_run: bool = True) -> dict[str, Any]:
    """Parameters and MACs of `build_c3ae(num_scales=2)`, predicted, then counted."""
    model = network.build_c3ae(num_scales=2)
    branch = network.count_macs(network.get_branch(model))
    # Prediction: the branch is shared, so only Feat grows by 512 inputs per scale; the
    # convolutions run once per scale, so the MACs are two branches plus the heads.
    predicted_params = network.build_c3ae(num_scales=3).count_params() - 512 * 12
    predicted_macs = 2 * branch + 1024 * 12 + 12
    params, macs = model.count_params(), network.count_macs(model)
    assert params == predicted_params and macs == predicted_macs
    return {"parameters": params, "macs": macs,
            "answer": "Two scales share the branch: 6,144 parameters fewer than three (Feat's 512 x 12), "
                      "and two branch passes of MACs instead of three."}


def _branch(conv1_filters: int) -> keras.Model:
    """Notebook 04's `my_branch(use_se=True, conv1_bias=False)` with `conv1_filters` filters in
    conv1 (conv2 then reads that many channels, and the first SE block weighs that many)."""
    crop = keras.Input((64, 64, 3))
    x = crop
    for index, filters in ((1, conv1_filters), (2, 32), (3, 32)):
        x = keras.layers.Conv2D(filters, 3, use_bias=index > 1)(x)
        x = keras.layers.AveragePooling2D(2)(keras.layers.ReLU()(keras.layers.BatchNormalization()(x)))
        x = network.squeeze_excitation(x, index)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(32, 3)(x)))
    x = network.squeeze_excitation(keras.layers.Conv2D(32, 1)(network.squeeze_excitation(x, 4)), 5)
    return keras.Model(crop, keras.layers.Flatten()(x))


def exercise_2(small_run: bool = True) -> dict[str, Any]:
    """Which layer to shrink to halve a branch's MACs; 16 filters in conv1, at what cost in parameters."""
    table = network.macs_table(network.build_branch(use_se=False))
    share = (table.set_index("layer")["macs"] / table["macs"].sum()).round(3).to_dict()
    full, slim = _branch(32), _branch(16)
    saved = 1 - network.count_macs(slim) / network.count_macs(full)
    assert max(share, key=share.get) == "conv2" and 0.4 < saved < 0.5
    fewer = full.count_params() - slim.count_params()
    return {"macs_share": share, "macs_saved_by_16_conv1_filters": round(saved, 3), "parameters_saved": fewer,
            "answer": f"conv2 costs most ({share['conv2']:.0%}): it reads 32 channels on a 31x31 map. 16 filters "
                      f"in conv1 halve conv1 and conv2, saving {saved:.0%} of the MACs for {fewer:,} fewer parameters."}


def exercise_3(small_run: bool = True) -> dict[str, Any]:
    """UTKFace MAE of v89 with the crops in the wrong order, and RGB fed to the BGR-trained weights."""
    crops, ages = _adult_faces(small_run)
    model = network.load_model("reference-v89")
    mae = {"as trained": _mae(model, crops, ages),
           "inner, middle, outer": _mae(model, crops[:, ::-1], ages),
           "channels swapped": _mae(model, crops[..., ::-1], ages)}  # the model flips again: BGR becomes RGB
    assert mae["inner, middle, outer"] > mae["as trained"] and mae["channels swapped"] > mae["as trained"]
    return {"mae": mae, "faces": len(ages),
            "answer": "The shared branch sees every scale, but Feat's weights are tied to the position of each "
                      "scale's 512 features, so swapping the crops breaks the model; the colour order matters less."}


def exercise_4(small_run: bool = True) -> dict[str, Any]:
    """Do the outer and inner crops of the same faces switch off the same SE channels?"""
    crops, _ = _adult_faces(small_run)
    model = network.load_model("reference-v89")
    outer, inner = (network.se_channel_scales(model, crops[:64], scale=scale) for scale in (0, 2))
    agreement = {block: float(np.corrcoef(outer[block].mean(0), inner[block].mean(0))[0, 1]) for block in outer}
    assert all(-1 <= value <= 1 for value in agreement.values())
    low, high = min(agreement.values()), max(agreement.values())
    return {"correlation_of_mean_channel_weights": agreement,
            "answer": f"Across the five blocks the mean channel weights of the outer and inner crops correlate "
                      f"{low:.2f} to {high:.2f}: mostly the same channels are kept or switched off for both "
                      "scales, as the branch and its SE blocks are shared; single faces vary more."}


def exercise_5(small_run: bool = True) -> dict[str, Any]:
    """v89 with its learned W2 replaced by the bin values (W1 kept)."""
    crops, ages = _adult_faces(small_run)
    model = network.load_model("reference-v89")
    learned = _mae(model, crops, ages)
    head = model.get_layer("age")
    head.kernel.assign(age_encoding.bin_values()[:, None].astype(np.float32))
    head.bias.assign(np.zeros(1, np.float32))
    with_bins = _mae(model, crops, ages)
    assert with_bins > learned + 3
    return {"mae_learned_w2": learned, "mae_bin_values": with_bins,
            "answer": "The reference learned W1 and W2 together from a random W2, so W1's outputs are not a "
                      "distribution over 0-110 years; with a fixed W2 training would make them one."}


if __name__ == "__main__":
    sys.exit(solutions.main(sys.modules[__name__]))
