"""The C3AE network in Keras 3 (functional API), its parameter/MAC accounting, and the
loader of the reference implementation's Keras 2.2.4 `.h5` weights.

Model contract (docs/architecture.md):

- one input `crops`: float32 `[batch, 3, 64, 64, 3]`, RGB, raw 0-255 values, the three
  context crops ordered outer, middle, inner (uint8 arrays are fine to feed);
- a dict of outputs: `distribution` float32 `[batch, num_bins]` (softmax over the bins
  0, 10, ..., 110) and `age` float32 `[batch, 1]` in years.

Inside: optional channel flip (models trained on OpenCV's BGR order), optional white norm
`(x - 127.5) / 128`, then ONE branch model (`keras.Model` named "branch", weights shared)
applied to each selected crop: conv 3x3x32 -> BRA (BatchNorm, ReLU, AvgPool 2x2) three
times, conv4 3x3x32 -> BN + ReLU, conv5 1x1x32 -> flatten (height, width, channel order,
4x4x32 = 512 features). With `use_se`, a squeeze-and-excitation (SE) block with reduction 2
follows each BRA, conv4's BN + ReLU and conv5, as in the reference implementation. The
branch features are concatenated (scale order) and go through W1 = Dense(num_bins,
softmax) "distribution" and W2 = Dense(1) "age".

With `num_scales=1` (or 2) the model still takes the three crops and uses the first
`num_scales` of them; crop 0 is the outer crop, the whole aligned face with context,
which is what a single-scale model sees in the paper.

Custom layers use `keras.ops` only, so the model also runs on the JAX backend.

Registration: Keras finds custom classes in its process-wide registry when it reads a
`.keras` file, so every class a saved model names must be registered before
`keras.saving.load_model`. This module registers its layers and imports `losses`, which
registers the losses and metrics of compiled runs; every package module that handles Keras
models imports this one, so importing any of them (`network`, `training`, `evaluation`,
`inference`) is enough. Modules without Keras (`paths`, `datasets`, `faces`)
stay light.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pandas as pd
from keras import ops
from tqdm.auto import tqdm

from c3ae_utils import age_encoding, datasets, paths
from c3ae_utils import losses as _losses  # noqa: F401  (registers the losses and metrics of compiled runs)
from c3ae_utils.shapes import CROP_SIZE, CROPS_SHAPE, SCALE_NAMES

logger = logging.getLogger(__name__)

FILTERS = 32
SE_REDUCTION = 2
BRANCH_NAME = "branch"
# The end of every message about weights that cannot be used.
WEIGHTS_ADVICE = (
    "Give C3AE weights: a run name or folder, a .keras file of a model built with "
    "network.build_c3ae, a reference .h5 file, or reference-v89 / reference-v84."
)

# The paper's Table 1 (one branch, single scale, plain): layer -> parameters.
PAPER_TABLE1: dict[str, int] = {
    "conv1": 896,
    "BRA1": 128,
    "conv2": 9248,
    "BRA2": 128,
    "conv3": 9248,
    "BRA3": 128,
    "conv4": 9248,
    "BN4": 128,
    "conv5": 1056,
    "Feat": 6156,
    "Pred": 13,
}
PAPER_TOTAL_PARAMS = 36_377
PAPER_MACC_PER_BRANCH = 12.6e6


# ---------------------------------------------------------------------------------------
# Custom layers and initialiser (registered, so `.keras` files reload without custom_objects)
# ---------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="c3ae")
class SelectScale(keras.layers.Layer):
    """Pick crop `index` of `[batch, 3, 64, 64, 3]` -> `[batch, 64, 64, 3]`."""

    def __init__(self, index: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return ops.take(inputs, self.index, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])

    def get_config(self) -> dict:
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package="c3ae")
class WhiteNorm(keras.layers.Layer):
    """The reference's "white norm": `(x - 127.5) / 128`, raw 0-255 pixels to about [-1, 1]."""

    def call(self, inputs):
        return (ops.cast(inputs, self.compute_dtype) - 127.5) / 128.0

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="c3ae")
class ReverseChannels(keras.layers.Layer):
    """Reverse the last axis: RGB -> BGR (and back), for weights trained on OpenCV images."""

    def call(self, inputs):
        return ops.flip(inputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="c3ae")
class MirrorCrops(keras.layers.Layer):
    """Mirror every crop left-right: `[batch, 3, 64, 64, 3]` (axis 3 is a crop's width)."""

    def call(self, inputs):
        return ops.flip(inputs, axis=3)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="c3ae")
class BinValues(keras.initializers.Initializer):
    """Initialise a `[num_bins, 1]` kernel with the bin values 0, bin_width, ... (years)."""

    def __init__(self, bin_width: float = age_encoding.BIN_WIDTH) -> None:
        self.bin_width = float(bin_width)

    def __call__(self, shape, dtype=None):
        if len(shape) != 2 or shape[1] != 1:
            raise ValueError(f"BinValues initialises a [num_bins, 1] kernel, not {shape}.")
        values = age_encoding.bin_values(shape[0], self.bin_width).reshape(shape)
        return ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {"bin_width": self.bin_width}


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


def squeeze_excitation(x, index: int, reduction: int = SE_REDUCTION):
    """SE block `se{index}`: global average pool -> Dense(c/r, ReLU) -> Dense(c, sigmoid) ->
    rescale each channel of `x` `[batch, h, w, c]` by its weight in (0, 1)."""
    channels = x.shape[-1]
    squeezed = keras.layers.GlobalAveragePooling2D(name=f"se{index}_squeeze")(x)
    reduced = keras.layers.Dense(
        channels // reduction, activation="relu", name=f"se{index}_reduce"
    )(squeezed)
    scales = keras.layers.Dense(channels, activation="sigmoid", name=f"se{index}_expand")(reduced)
    scales = keras.layers.Reshape((1, 1, channels), name=f"se{index}_reshape")(scales)
    return keras.layers.Multiply(name=f"se{index}_scale")([x, scales])


def bra_block(x, index: int, use_bias: bool = True):
    """conv{index} 3x3x32 (valid) -> BRA: BatchNorm, ReLU, AveragePooling 2x2."""
    x = keras.layers.Conv2D(FILTERS, 3, use_bias=use_bias, name=f"conv{index}")(x)
    x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
    x = keras.layers.ReLU(name=f"relu{index}")(x)
    return keras.layers.AveragePooling2D(2, name=f"pool{index}")(x)


def build_branch(
    use_se: bool = True, conv1_bias: bool = False, name: str = BRANCH_NAME
) -> keras.Model:
    """One C3AE branch: float32 `[batch, 64, 64, 3]` (already normalised) -> `[batch, 512]`.

    Spatial sizes: 64 -> conv 62 -> pool 31 -> conv 29 -> pool 14 -> conv 12 -> pool 6 ->
    conv4 4 -> conv5 (1x1) 4, so 4x4x32 features flattened in (height, width, channel) order.
    """
    image = keras.Input((CROP_SIZE, CROP_SIZE, 3), name="crop")
    x = image
    for index in (1, 2, 3):
        x = bra_block(x, index, use_bias=conv1_bias if index == 1 else True)
        if use_se:
            x = squeeze_excitation(x, index)
    x = keras.layers.Conv2D(FILTERS, 3, name="conv4")(x)
    x = keras.layers.BatchNormalization(name="bn4")(x)
    x = keras.layers.ReLU(name="relu4")(x)
    if use_se:
        x = squeeze_excitation(x, 4)
    x = keras.layers.Conv2D(FILTERS, 1, name="conv5")(x)
    if use_se:
        x = squeeze_excitation(x, 5)
    features = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(image, features, name=name)


def build_c3ae(
    num_scales: int = 3,
    use_se: bool = True,
    white_norm: bool = True,
    conv1_bias: bool = False,
    num_bins: int = age_encoding.NUM_BINS,
    learn_w2: bool = True,
    w2_init: str = "bins",
    input_order: str = "rgb",
    bin_width: float = age_encoding.BIN_WIDTH,
    name: str = "c3ae",
) -> keras.Model:
    """Build C3AE: input `crops` float32 `[batch, 3, 64, 64, 3]` RGB 0-255 -> dict outputs
    `distribution` `[batch, num_bins]` (softmax) and `age` `[batch, 1]` (years).

    - `num_scales`: how many of the three crops feed the shared branch (the first ones:
      outer, then middle, then inner); 3 is C3AE, 1 is the paper's single-scale plain net.
    - `use_se`: SE blocks (reduction 2) after each BRA, conv4's BN + ReLU and conv5.
    - `white_norm`: `(x - 127.5) / 128` inside the model (else the branch sees raw 0-255).
    - `conv1_bias`: the paper's table counts a bias in conv1; the reference has none.
    - `learn_w2`: W2 trainable; if False, W2 is frozen at the bin values with zero bias, so
      `age` is exactly the expectation of `distribution` (the paper's reasoning).
    - `w2_init`: for a learnable W2, "bins" starts it at the bin values (zero bias),
      "random" uses Keras' default (Glorot uniform), as the reference did.
    - `input_order`: "rgb", or "bgr" for weights trained on OpenCV's BGR images: the model
      then flips the channels itself, so every model takes RGB.
    """
    if num_scales not in (1, 2, 3):
        raise ValueError(f"num_scales must be 1, 2 or 3 (got {num_scales}).")
    if input_order not in ("rgb", "bgr"):
        raise ValueError(f"input_order must be 'rgb' or 'bgr' (got {input_order!r}).")
    if w2_init not in ("bins", "random"):
        raise ValueError(f"w2_init must be 'bins' or 'random' (got {w2_init!r}).")
    if num_bins < 2:
        raise ValueError(f"num_bins must be at least 2 (got {num_bins}).")

    crops = keras.Input(CROPS_SHAPE, name="crops")
    x = crops
    if input_order == "bgr":
        x = ReverseChannels(name="rgb_to_bgr")(x)
    if white_norm:
        x = WhiteNorm(name="white_norm")(x)
    branch = build_branch(use_se=use_se, conv1_bias=conv1_bias)
    features = [
        branch(SelectScale(index, name=f"select_{SCALE_NAMES[index]}")(x))
        for index in range(num_scales)
    ]
    if num_scales > 1:
        features = keras.layers.Concatenate(name="features")(features)
    else:
        features = features[0]
    # Heads stay float32 under mixed precision: a float16 softmax and age regression lose precision.
    distribution = keras.layers.Dense(
        num_bins, activation="softmax", name="distribution", dtype="float32"
    )(features)
    bins_init = not learn_w2 or w2_init == "bins"
    age = keras.layers.Dense(
        1,
        name="age",
        dtype="float32",
        kernel_initializer=BinValues(bin_width) if bins_init else "glorot_uniform",
        bias_initializer="zeros",
        trainable=learn_w2,
    )(distribution)
    return keras.Model(crops, {"distribution": distribution, "age": age}, name=name)


def with_flip_averaging(model: keras.Model) -> keras.Model:
    """`model` wrapped to average its outputs for the crops and for their mirror images
    (`MirrorCrops`): test-time augmentation inside the model, so a saved or exported file
    does it too. The same weights (no new parameter) and signature; twice the compute.
    Matches `predict_ages(model, crops, flip=True)` to float rounding."""
    crops = keras.Input(CROPS_SHAPE, name="crops")
    plain, mirrored = model(crops), model(MirrorCrops(name="mirror")(crops))
    outputs = {key: keras.layers.Average(name=key, dtype="float32")([plain[key], mirrored[key]])
               for key in ("distribution", "age")}
    return keras.Model(crops, outputs, name=f"{model.name}_flip")


def core_network(model: keras.Model) -> keras.Model:
    """The C3AE network inside a `with_flip_averaging` wrapper, or `model` itself."""
    if not any(isinstance(layer, MirrorCrops) for layer in model.layers):
        return model
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def get_branch(model: keras.Model) -> keras.Model:
    """The shared branch (a nested `keras.Model`) of a C3AE model (or of the network inside
    a `with_flip_averaging` wrapper)."""
    model = core_network(model)
    try:
        return model.get_layer(BRANCH_NAME)
    except ValueError as error:
        raise ValueError(
            f"{model.name} has no layer named {BRANCH_NAME!r}; build it with build_c3ae."
        ) from error


def branch_inputs(model: keras.Model, crops: np.ndarray, scale: int = 0) -> np.ndarray:
    """What the branch sees for crop `scale` of `crops` uint8/float32 `[n, 3, 64, 64, 3]`:
    float32 `[n, 64, 64, 3]` after the model's own channel flip and white norm."""
    model = core_network(model)
    x = ops.convert_to_tensor(np.asarray(crops, dtype=np.float32))
    for layer_name in ("rgb_to_bgr", "white_norm"):
        if any(layer.name == layer_name for layer in model.layers):
            x = model.get_layer(layer_name)(x)
    return ops.convert_to_numpy(ops.take(x, scale, axis=1))


def se_channel_scales(
    model: keras.Model, crops: np.ndarray, scale: int = 0
) -> dict[str, np.ndarray]:
    """Per-channel SE weights in (0, 1) for crop `scale`: `{"se1": float32 [n, 32], ...}`."""
    branch = get_branch(model)
    names = [layer.name for layer in branch.layers if layer.name.endswith("_expand")]
    if not names:
        raise ValueError(f"{model.name} has no SE blocks; build it with use_se=True.")
    probe = keras.Model(branch.inputs, [branch.get_layer(name).output for name in names])
    outputs = probe.predict_on_batch(branch_inputs(model, crops, scale))
    return {
        name.removesuffix("_expand"): np.asarray(out)
        for name, out in zip(names, outputs, strict=True)
    }


# ---------------------------------------------------------------------------------------
# Accounting: parameters and multiply-accumulates
# ---------------------------------------------------------------------------------------


def _layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of one call of a Conv2D or Dense layer for one sample (others count 0)."""
    if isinstance(layer, keras.layers.Conv2D):
        _, out_h, out_w, out_c = layer.output.shape
        k_h, k_w, in_c, _ = layer.kernel.shape
        return int(out_h * out_w * out_c * k_h * k_w * in_c)
    if isinstance(layer, keras.layers.Dense):
        in_units, out_units = layer.kernel.shape
        return int(in_units * out_units)
    return 0


def _call_counts(model: keras.Model) -> dict[str, int]:
    """How many times each layer of a functional `model` is called in its graph."""
    return {
        layer_config["name"]: max(1, len(layer_config.get("inbound_nodes", [])))
        for layer_config in model.get_config()["layers"]
    }


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one sample through `model` (a branch or a whole C3AE).

    Counts convolutions and dense layers (k_h * k_w * c_in per output value); BatchNorm,
    ReLU, pooling and the SE rescale are element-wise and not counted, as in the paper's
    MACC figure. A nested model (the shared branch) counts once per call.
    """
    calls = _call_counts(model)
    total = 0
    for layer in model.layers:
        per_call = count_macs(layer) if isinstance(layer, keras.Model) else _layer_macs(layer)
        total += per_call * calls.get(layer.name, 1)
    return total


def macs_table(model: keras.Model):
    """A pandas DataFrame of the layers that cost multiply-accumulates: `layer`, `type`,
    `calls` (per sample), `macs` (all calls); nested models (the branch) are expanded."""
    rows = []
    calls = _call_counts(model)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for row in macs_table(layer).to_dict("records"):
                times = calls.get(layer.name, 1)
                rows.append(
                    {
                        **row,
                        "layer": f"{layer.name}/{row['layer']}",
                        "calls": row["calls"] * times,
                        "macs": row["macs"] * times,
                    }
                )
        elif _layer_macs(layer):
            times = calls.get(layer.name, 1)
            rows.append(
                {
                    "layer": layer.name,
                    "type": type(layer).__name__,
                    "calls": times,
                    "macs": _layer_macs(layer) * times,
                }
            )
    return pd.DataFrame(rows, columns=["layer", "type", "calls", "macs"])


def summary_table(model: keras.Model, expand_nested: bool = True):
    """A pandas DataFrame with one row per layer: `layer`, `type`, `output_shape`, `params`
    (nested models expanded as `branch/<layer>` rows when `expand_nested`)."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model) and expand_nested:
            for row in summary_table(layer).to_dict("records"):
                rows.append({**row, "layer": f"{layer.name}/{row['layer']}"})
            continue
        output = layer.output
        shape = output.shape if hasattr(output, "shape") else [t.shape for t in output]
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": str(tuple(shape)),
                "params": int(layer.count_params()),
            }
        )
    return pd.DataFrame(rows, columns=["layer", "type", "output_shape", "params"])


def table1_comparison(model: keras.Model):
    """Our single-branch parameters next to the paper's Table 1 (DataFrame: row, paper, ours).

    Rows follow the paper: conv1..conv5, BRA1-3 and BN4 (BatchNorm: gamma, beta and the two
    moving statistics, 4 x 32 = 128), Feat (W1) and Pred (W2); SE blocks, which Table 1
    does not have, get their own rows.
    """
    branch = get_branch(model)
    ours: dict[str, int] = {}
    for layer in branch.layers:
        params = layer.count_params() if layer.weights else 0
        if not params:
            continue
        if layer.name.startswith("bn"):
            key = f"BN{layer.name[2:]}" if layer.name == "bn4" else f"BRA{layer.name[2:]}"
        elif layer.name.startswith("se"):
            key = layer.name.split("_")[0].upper()
        else:
            key = layer.name
        ours[key] = ours.get(key, 0) + params
    ours["Feat"] = model.get_layer("distribution").count_params()
    ours["Pred"] = model.get_layer("age").count_params()
    keys = list(PAPER_TABLE1) + [key for key in ours if key not in PAPER_TABLE1]
    table = pd.DataFrame(
        {
            "row": keys,
            "paper": [PAPER_TABLE1.get(key, 0) for key in keys],
            "ours": [ours.get(key, 0) for key in keys],
        }
    )
    total = pd.DataFrame(
        {"row": ["total"], "paper": [PAPER_TOTAL_PARAMS], "ours": [model.count_params()]}
    )
    return pd.concat([table, total], ignore_index=True)


# ---------------------------------------------------------------------------------------
# The reference implementation's Keras 2.2.4 weights
# ---------------------------------------------------------------------------------------


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


def _file_start(path: Path) -> str:
    """What a file looks like, for messages: its size and first bytes."""
    with open(path, "rb") as stream:
        head = stream.read(16)
    return f"a file of {path.stat().st_size} bytes starting {head!r}" if head else "an empty file"


def _read_reference_file(path: Path) -> tuple[dict, dict[tuple[str, str], np.ndarray]]:
    """The `model_config` and weight arrays of a Keras 2 `.h5` model file; ValueError naming
    the file and what it holds instead when it is not one."""
    if not h5py.is_hdf5(path):
        raise ValueError(
            f"{path} is not a Keras .h5 model: expected an HDF5 file, found {_file_start(path)}. "
            f"{WEIGHTS_ADVICE}"
        )
    if _saved_by_keras3(path):
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
            f"{path} cannot be read as reference weights: {_clause(error)}. {WEIGHTS_ADVICE}"
        ) from error


def _clause(error: BaseException) -> str:
    """An error's message without its final full stop, to continue a sentence."""
    return str(error).rstrip(". ")


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
            f"{path} is not a C3AE reference model: {_clause(error)}. {WEIGHTS_ADVICE}"
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


# ---------------------------------------------------------------------------------------
# Weights: the one loader (runs, .keras files, the reference .h5 files)
# ---------------------------------------------------------------------------------------

# The reference implementation's published weights (fetched by `datasets.fetch("reference")`).
REFERENCE_WEIGHTS: dict[str, str] = {
    "reference-v89": "c3ae_imdb_v89.h5",  # focal loss + SE
    "reference-v84": "imdb_focal_loss_c3ae_v84.h5",  # focal loss, no SE
}
# The course's own model, shipped in the repository's `models/` (installed as the package
# data `c3ae_utils.models`); `models/README.md` is its model card.
SHIPPED_WEIGHTS: dict[str, str] = {
    "c3ae-utkface": "c3ae_utkface.keras",  # KL + SE, trained on UTKFace's train split
}
DEFAULT_WEIGHTS = "c3ae-utkface"  # the shipped model; "reference-v89" is one flag away
WEIGHT_SUFFIXES = (".keras", ".h5")
# What every model `load_model` returns takes and gives (batch axis None).
EXPECTED_INPUTS = [(None, *CROPS_SHAPE)]
EXPECTED_OUTPUTS = {"age": (None, 1), "distribution": (None, age_encoding.NUM_BINS)}


def _reference_sha256(file_name: str) -> str | None:
    """The published SHA-256 of the reference file `file_name` (`datasets.REGISTRY`)."""
    spec = datasets.get_spec("reference")
    digests = [entry.sha256 for entry in (*spec.mirror, *spec.downloads) if entry.target == file_name]
    return next((digest for digest in digests if digest), None)


def _verify_reference(path: Path) -> Path:
    """`path` after checking its SHA-256 against the registry; ValueError naming the file
    when it changed after it was fetched (fetching checks it only once)."""
    try:
        datasets.verify_checksum(path, sha256=_reference_sha256(path.name))
    except ValueError as error:
        raise ValueError(
            f"{path} is not the published reference file: {_clause(error)}. It was damaged or "
            f"changed after it was fetched: delete {path.parent} and run "
            "`c3ae data fetch reference` (or datasets.fetch('reference'))."
        ) from error
    return path


def reference_weights_path(name: str = "reference-v89") -> Path:
    """The file of reference weights `name` (a key of `REFERENCE_WEIGHTS` or its file name),
    fetched with `datasets.fetch("reference")` on first use and checked against its
    published SHA-256 on every use (ValueError when it differs)."""
    file_name = REFERENCE_WEIGHTS.get(name, name)
    if file_name not in REFERENCE_WEIGHTS.values():
        raise ValueError(f"Unknown reference weights {name!r}; choose one of {sorted(REFERENCE_WEIGHTS)}.")
    path = datasets.fetch("reference") / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing after datasets.fetch('reference').")
    return _verify_reference(path)


def shipped_models_dir() -> Path:
    """The folder of the shipped models: the checkout's `models/` when running from one, else
    the installed package data `c3ae_utils.models` (the same files, copied by pip)."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / "models"
    if (package.parent / "pyproject.toml").is_file() and checkout.is_dir():  # not some site-packages/models
        return checkout
    installed = package / "models"  # where pip puts them (pyproject maps models/ to c3ae_utils.models)
    return installed if installed.is_dir() else checkout  # neither: the error names the checkout's


def shipped_weights_path(name: str = "c3ae-utkface") -> Path:
    """The `.keras` file of a shipped model (a key of `SHIPPED_WEIGHTS`)."""
    if name not in SHIPPED_WEIGHTS:
        raise ValueError(f"Unknown shipped model {name!r}; choose one of {sorted(SHIPPED_WEIGHTS)}.")
    path = shipped_models_dir() / SHIPPED_WEIGHTS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the shipped model comes with the repository (`git checkout -- models/`)."
        )
    return path


def _named_weights(name: str) -> Path | None:
    """The file of a named model ("c3ae-utkface", "reference-v89", ...), or None for other names."""
    if name in SHIPPED_WEIGHTS:
        return shipped_weights_path(name)
    if name in REFERENCE_WEIGHTS:
        return reference_weights_path(name)
    return None


def _run_model_file(folder: Path) -> Path:
    """A run folder's `best.keras`, else its `last.keras`."""
    for name in ("best.keras", "last.keras"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"Run folder {folder} has no best.keras or last.keras: train it first.")


def resolve_weights(spec: str | os.PathLike | Any | None = None) -> Path:
    """The weights file that `spec` names.

    `spec` is None (the default weights, `DEFAULT_WEIGHTS`), the name of a shipped model
    (`SHIPPED_WEIGHTS`: "c3ae-utkface") or of reference weights (`REFERENCE_WEIGHTS`:
    "reference-v89", "reference-v84"), a `.keras` or `.h5` file, a run folder or the name of
    a run in `paths.runs_dir()` (its `best.keras`), or a `training.Run` (anything with a
    `path` attribute naming a run folder).
    """
    if spec is None or str(spec) == "":
        spec = DEFAULT_WEIGHTS
    if hasattr(spec, "path") and not isinstance(spec, str | os.PathLike):
        spec = spec.path
    named = _named_weights(str(spec))
    if named is not None:
        return named
    candidate = Path(spec).expanduser()
    for folder in (candidate, paths.runs_dir() / str(spec)):
        if folder.is_dir():
            return _run_model_file(folder)
    if candidate.is_file():
        if candidate.suffix not in WEIGHT_SUFFIXES:
            raise ValueError(f"Weights must be a .keras or .h5 file, got {candidate}.")
        return candidate
    runs = sorted(p.name for p in paths.runs_dir().glob("*") if (p / "best.keras").is_file())
    raise FileNotFoundError(
        f"No weights at {str(spec)!r}: give a .keras file, a reference .h5 file, "
        f"{', '.join(sorted(SHIPPED_WEIGHTS))}, {' or '.join(sorted(REFERENCE_WEIGHTS))}, a run folder, or one of the runs in "
        f"{paths.runs_dir()}: {runs or 'none yet (run notebook 05)'}."
    )


def weights_label(path: Path) -> str:
    """A short name for a weights file: the run name for a run's model, else the file stem."""
    path = Path(path)
    return path.parent.name if path.name in ("best.keras", "last.keras") else path.stem


def model_label(spec: keras.Model | str | os.PathLike | Any | None = None) -> str:
    """A short name for what `load_model(spec)` loads: a model's own name, else `weights_label`
    of the file `resolve_weights` finds."""
    return spec.name if isinstance(spec, keras.Model) else weights_label(resolve_weights(spec))


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def _signature_text(inputs: list[tuple], outputs: dict[str, tuple]) -> str:
    """E.g. "one input [None, 3, 64, 64, 3] and outputs age [None, 1], distribution [None, 12]"."""
    count = {0: "no input", 1: "one input"}.get(len(inputs), f"{len(inputs)} inputs")
    shapes = ", ".join(_shape_text(shape) for shape in inputs)
    heads = ", ".join(f"{name} {_shape_text(shape)}" for name, shape in outputs.items()) or "none"
    return f"{count} {shapes}".rstrip() + f" and outputs {heads}"


def model_signature(model: keras.Model) -> tuple[list[tuple], dict[str, tuple]]:
    """A Keras model's input shapes and `{output name: shape}` (batch axis None); empty for a
    model that was never built on inputs (a subclassed model)."""
    inputs = [tuple(tensor.shape) for tensor in getattr(model, "inputs", None) or []]
    tensors = getattr(model, "outputs", None) or []
    names = getattr(model, "output_names", None) or [tensor.name for tensor in tensors]
    return inputs, {name: tuple(tensor.shape) for name, tensor in zip(names, tensors, strict=False)}


def check_signature(model: keras.Model, source: str | os.PathLike) -> keras.Model:
    """`model` after checking it takes crops `[None, 3, 64, 64, 3]` and gives `age` `[None, 1]`
    and `distribution` `[None, 12]`; ValueError naming `source` and what it has instead."""
    inputs, outputs = model_signature(model)
    if inputs != EXPECTED_INPUTS or outputs != EXPECTED_OUTPUTS:
        raise ValueError(
            f"{source} is not a C3AE model: expected {_signature_text(EXPECTED_INPUTS, EXPECTED_OUTPUTS)}, "
            f"found {_signature_text(inputs, dict(sorted(outputs.items())))}. {WEIGHTS_ADVICE}"
        )
    return model


def _keras_load(path: Path, compile: bool) -> keras.Model:
    """`keras.saving.load_model(path)`; ValueError naming the file when Keras cannot read it."""
    try:
        return keras.saving.load_model(path, compile=compile)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:  # TypeError: unknown class
        raise ValueError(
            f"{path} cannot be loaded as a Keras model: {' '.join(_clause(error).split())}. "
            f"{WEIGHTS_ADVICE}"
        ) from error


def _load_file(path: Path, compile: bool) -> keras.Model:
    """The model in a weights file: `.keras` zip archives and `.h5` files saved by Keras 3
    through Keras, Keras 2 `.h5` files (the reference's) through `load_reference_h5`;
    ValueError naming the file when it is neither (Keras calls a damaged archive "File not
    found")."""
    if path.suffix == ".h5":
        return _keras_load(path, compile) if _saved_by_keras3(path) else load_reference_h5(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a Keras model: expected a .keras zip archive, found "
            f"{_file_start(path)}. {WEIGHTS_ADVICE}"
        )
    return _keras_load(path, compile)


def _saved_by_keras3(path: Path) -> bool:
    """True for an HDF5 file written by Keras 3's `model.save("....h5")` (not the reference's
    Keras 2 layout, which `load_reference_h5` maps; read as one, its ages would be wrong)."""
    try:
        with h5py.File(path, "r") as file:
            version = file.attrs.get("keras_version", b"")
    except OSError:  # not HDF5, or damaged: `load_reference_h5` says which
        return False
    major = (version.decode() if isinstance(version, bytes) else str(version)).split(".")[0]
    return major.isdigit() and int(major) >= 3


def load_model(spec: keras.Model | str | os.PathLike | Any | None = None, compile: bool = False) -> keras.Model:
    """A C3AE Keras model (RGB input) from anything `resolve_weights` accepts, or `spec` itself
    when it already is a `keras.Model`. Reference `.h5` files go through `load_reference_h5`;
    `compile=True` restores a run's optimizer and losses (needed only to continue training).

    Every model is checked before it is returned (`check_signature`: one input `crops`
    `[None, 3, 64, 64, 3]`, outputs `age` `[None, 1]` and `distribution` `[None, 12]`), so a
    file that is not a model, or is another model, fails here with a ValueError naming the
    file, not at the first face.
    """
    if isinstance(spec, keras.Model):
        return check_signature(spec, f"model {spec.name!r}")
    path = resolve_weights(spec)
    model = _load_file(path, compile)
    return check_signature(model, path)


# ---------------------------------------------------------------------------------------
# Prediction: the one batched predictor
# ---------------------------------------------------------------------------------------


def _check_crops(crops: np.ndarray) -> np.ndarray:
    """`crops` as an array of shape `[n, 3, 64, 64, 3]`; ValueError naming the shape otherwise."""
    crops = np.asarray(crops)
    if crops.ndim != 5 or crops.shape[1:] != CROPS_SHAPE:
        raise ValueError(f"Expected crops of shape [n, 3, 64, 64, 3]; got {crops.shape}.")
    return crops


def _call_once(model: keras.Model | Callable, batch: np.ndarray) -> dict[str, np.ndarray]:
    """One forward pass: `predict_on_batch` for Keras models (no `predict` overhead), a plain
    call for exported runners; the outputs as `{"age": [b], "distribution": [b, bins]}`."""
    outputs = getattr(model, "predict_on_batch", model)(batch)
    if isinstance(outputs, list | tuple) and hasattr(model, "output_names"):
        outputs = dict(zip(model.output_names, outputs, strict=True))
    if not isinstance(outputs, dict) or not {"age", "distribution"} <= set(outputs):
        raise ValueError(
            "The model must return a dict with 'age' and 'distribution' (see network.build_c3ae); "
            f"got {type(outputs).__name__}."
        )
    return {
        "age": np.asarray(outputs["age"], np.float32).reshape(len(batch), -1)[:, 0],
        "distribution": np.asarray(outputs["distribution"], np.float32),
    }


def predict_ages(
    model: keras.Model | Callable, crops: np.ndarray, batch_size: int = 256, progress: bool = False,
    flip: bool = False,
) -> dict[str, np.ndarray]:
    """Ages and distributions of faces: crops uint8/float32 `[n, 3, 64, 64, 3]` (RGB, 0-255) ->
    `{"age": float32 [n] in years (the W2 head), "distribution": float32 [n, num_bins]}`.

    `model` is a Keras C3AE model or a callable returning the same dict (an exported
    `inference.TFLiteRunner` / `OnnxRunner`). Batches are padded to a power of two (at most
    `batch_size`), so a compiled model sees few distinct shapes and traces few times.
    `flip=True` is test-time augmentation: the mean of the outputs for the crops and for their
    mirror images (twice the work).
    """
    if flip:
        mirrored = np.ascontiguousarray(_check_crops(crops)[:, :, :, ::-1])  # axis 3: crop width
        plain, flipped = (predict_ages(model, part, batch_size, progress) for part in (crops, mirrored))
        return {key: (plain[key] + flipped[key]) / 2 for key in plain}
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size}).")
    crops = _check_crops(crops)
    count = len(crops)
    size = min(batch_size, 1 << max(0, count - 1).bit_length())
    parts = []
    starts = range(0, count, size)
    for start in tqdm(starts, desc="predict", unit="batch", disable=not progress, leave=False):
        batch = crops[start : start + size].astype(np.float32)
        used = len(batch)
        if used < size:
            batch = np.concatenate([batch, np.zeros((size - used, *CROPS_SHAPE), np.float32)])
        outputs = _call_once(model, batch)
        parts.append({key: value[:used] for key, value in outputs.items()})
    if not parts:
        return {"age": np.zeros(0, np.float32), "distribution": np.zeros((0, age_encoding.NUM_BINS), np.float32)}
    return {key: np.concatenate([part[key] for part in parts]) for key in ("age", "distribution")}

