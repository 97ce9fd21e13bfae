"""The reference implementation's Keras 2.2.4 `.h5` weights (v84, v89) read into our Keras 3
network: its layers matched by role, every array checked and used exactly once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import keras
import numpy as np

from c3ae_utils.network.architecture import BRANCH_NAME, build_c3ae
from c3ae_utils.network.weight_files import WEIGHTS_ADVICE, clause, file_start, saved_by_keras3

logger = logging.getLogger(__name__)


def _read_reference_arrays(weights_group) -> dict[tuple[str, str], np.ndarray]:
    """Every weight array of a Keras 2 `model_weights` group: (layer, kind) -> array,
    e.g. ("conv1", "kernel"), ("batch_normalization_1", "moving_mean")."""
    arrays: dict[tuple[str, str], np.ndarray] = {}
    for group_name in weights_group.attrs["layer_names"]:
        group = weights_group[group_name.decode() if isinstance(group_name, bytes) else group_name]
        for weight_name in group.attrs.get("weight_names", []):
            weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
            layer_name, kind = weight_name.split("/")[-2], weight_name.split("/")[-1].split(":")[0]
            if weight_name not in group:
                raise ValueError(
                    f"The file lists weight {weight_name} of {group.name} but its array is missing; "
                    "the file is damaged: fetch it again."
                )
            if (layer_name, kind) in arrays:
                raise ValueError(f"Weight {layer_name}/{kind} appears twice in the file.")
            arrays[(layer_name, kind)] = np.asarray(group[weight_name])
    return arrays


def _read_reference_file(path: Path) -> tuple[dict, dict[tuple[str, str], np.ndarray]]:
    """The `model_config` and weight arrays of a Keras 2 `.h5` model file; ValueError naming
    the file and what it holds instead when it is not one."""
    if not h5py.is_hdf5(path):
        raise ValueError(
            f"{path} is not a Keras .h5 model: expected an HDF5 file, found {file_start(path)}. "
            f"{WEIGHTS_ADVICE}"
        )
    if saved_by_keras3(path):
        raise ValueError(
            f"{path} was saved by Keras 3, not by the reference's Keras 2: load it with "
            "network.load_model."
        )
    try:
        with h5py.File(path, "r") as file:
            if "model_config" not in file.attrs or "model_weights" not in file:
                raise ValueError(
                    "expected a full Keras 2 model file (model_config and model_weights), found "
                    f"attributes {sorted(file.attrs)} and groups {sorted(file)}"
                )
            config = json.loads(file.attrs["model_config"])
            return config, _read_reference_arrays(file["model_weights"])
    except (OSError, KeyError, TypeError, ValueError) as error:  # h5py reports damage as all of these
        raise ValueError(
            f"{path} cannot be read as reference weights: {clause(error)}. {WEIGHTS_ADVICE}"
        ) from error


def _reference_structure(config: dict) -> tuple[bool, dict[str, str]]:
    """From a Keras 2 `model_config`: (uses SE, mapping reference layer name -> our layer path).

    Layers are matched by role in topological order (the i-th Conv2D of the branch is
    conv{i}, the i-th BatchNormalization bn{i}, dense pairs are the SE blocks), not by name.
    """
    layers = config["config"]["layers"]
    nested = [layer for layer in layers if layer["class_name"] in ("Model", "Functional")]
    if len(nested) != 1:
        raise ValueError(
            f"Expected one nested branch model in the reference file, found {len(nested)}."
        )
    branch_layers = nested[0]["config"]["layers"]
    by_class: dict[str, list[str]] = {}
    for layer in branch_layers:
        by_class.setdefault(layer["class_name"], []).append(layer["config"]["name"])
    convs, norms, denses = (
        by_class.get("Conv2D", []),
        by_class.get("BatchNormalization", []),
        by_class.get("Dense", []),
    )
    if len(convs) != 5 or len(norms) != 4 or len(denses) not in (0, 10):
        raise ValueError(
            f"Unexpected reference branch: {len(convs)} Conv2D, {len(norms)} BatchNormalization, "
            f"{len(denses)} Dense (expected 5, 4 and 0 or 10)."
        )
    mapping = {name: f"{BRANCH_NAME}/conv{i}" for i, name in enumerate(convs, start=1)}
    mapping |= {name: f"{BRANCH_NAME}/bn{i}" for i, name in enumerate(norms, start=1)}
    for i in range(len(denses) // 2):
        mapping[denses[2 * i]] = f"{BRANCH_NAME}/se{i + 1}_reduce"
        mapping[denses[2 * i + 1]] = f"{BRANCH_NAME}/se{i + 1}_expand"
    heads = [
        layer["config"]["name"]
        for layer in layers
        if layer["class_name"] in ("Dense", "Conv2D") and layer["config"]["name"] != "age"
    ]
    if len(heads) != 1 or not any(layer["config"]["name"] == "age" for layer in layers):
        raise ValueError(f"Expected one 12-way head and an 'age' layer; found heads {heads}.")
    mapping[heads[0]] = "distribution"
    mapping["age"] = "age"
    return bool(denses), mapping


def _find_layer(model: keras.Model, path: str) -> keras.layers.Layer:
    layer = model
    for part in path.split("/"):
        layer = layer.get_layer(part)
    return layer


def load_reference_h5(path: str | Path) -> keras.Model:
    """Load a reference C3AE Keras 2.2.4 `.h5` (v84 or v89) into our Keras 3 network.

    Builds `build_c3ae(num_scales=3, use_se=<from the file>, white_norm=False,
    conv1_bias=False, learn_w2=True, input_order="bgr")` and copies every array across,
    checking that each array in the file is used exactly once, each of our variables is
    set exactly once and every shape matches (ValueError otherwise). v84's 12-way head is
    a 1x1 convolution (1x1x1536x12) on the concatenated features followed by global max
    pooling over a 1x1 map: the same function as our Dense(12), so its kernel is reshaped.
    The returned model takes RGB crops like every other model of the course. A file that is
    not a Keras 2 C3AE model (not HDF5, damaged, saved by Keras 3, another network) raises
    ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. Get the reference weights with datasets.fetch('reference')."
        )
    config, arrays = _read_reference_file(path)
    try:
        use_se, mapping = _reference_structure(config)
    except (ValueError, KeyError, TypeError) as error:  # KeyError, TypeError: not a Keras model config
        raise ValueError(
            f"{path} is not a C3AE reference model: {clause(error)}. {WEIGHTS_ADVICE}"
        ) from error
    model = build_c3ae(
        num_scales=3,
        use_se=use_se,
        white_norm=False,
        conv1_bias=False,
        learn_w2=True,
        input_order="bgr",
        name=path.stem.replace(".", "_"),
    )
    unset = {id(variable): variable.path for variable in model.weights}  # paths for messages
    for reference_name, our_path in mapping.items():
        layer = _find_layer(model, our_path)
        for variable in layer.weights:
            key = (reference_name, variable.name)
            if key not in arrays:
                raise ValueError(
                    f"{path.name}: no array {reference_name}/{variable.name} for {our_path}/{variable.name} "
                    "(missing, or already used by another layer)."
                )
            array = arrays.pop(key)
            if our_path == "distribution" and array.ndim == 4:
                array = array.reshape(array.shape[-2], array.shape[-1])  # 1x1 conv -> dense
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(
                    f"{path.name}: shape of {reference_name}/{variable.name} {array.shape} does "
                    f"not match {our_path}/{variable.name} {tuple(variable.shape)}."
                )
            variable.assign(array)
            unset.pop(id(variable))
    if arrays:
        raise ValueError(
            f"{path.name}: arrays left unused: {sorted('/'.join(key) for key in arrays)}."
        )
    if unset:
        raise ValueError(f"{path.name}: variables never set: {sorted(unset.values())}.")
    logger.info("Loaded %s (SE: %s) into %s.", path.name, use_se, model.name)
    return model
