"""The C3AE architecture: its blocks, `build_c3ae`, the flip-averaging wrapper, and the
helpers that take a built model apart (its core network, shared branch, SE weights).

Model contract (docs/architecture.md): one input `crops` float32 `[batch, 3, 64, 64, 3]`,
RGB, raw 0-255 values, the three context crops ordered outer, middle, inner; a dict of
outputs `distribution` float32 `[batch, num_bins]` (softmax over the bins 0, 10, ..., 110)
and `age` float32 `[batch, 1]` in years.

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
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from c3ae_utils import age_encoding
from c3ae_utils.network.layers import (
    BinValues,
    MirrorCrops,
    ReverseChannels,
    SelectScale,
    WhiteNorm,
)
from c3ae_utils.shapes import CROP_SIZE, CROPS_SHAPE, SCALE_NAMES

FILTERS = 32
SE_REDUCTION = 2
BRANCH_NAME = "branch"


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
