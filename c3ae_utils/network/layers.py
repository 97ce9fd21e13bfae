"""The custom Keras layers and initialiser of the C3AE model.

Each is registered with `keras.saving.register_keras_serializable(package="c3ae")` under
its class name, so `.keras` files (the shipped model, old run folders) reload without
`custom_objects`. They use `keras.ops` only, so the model also runs on the JAX backend.
"""

from __future__ import annotations

import keras
from keras import ops

from c3ae_utils import age_encoding


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
