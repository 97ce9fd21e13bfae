"""MTCNN's three networks compiled for video streams, each compiled once per process.

`StreamNetworks(detector)` runs the `Detector`'s networks as `faces.tracking` calls them:

- `pyramid(first, sizes)`: P-Net on every level of a frame's pyramid in one TensorFlow graph,
  traced once per frame size (the level sizes are part of its arguments);
- `rnet(images, boxes, indices)`, `onet(...)`: R-Net and O-Net on patches cut by OpenCV,
  converted to TFLite on first use (about 0.5 s each). A frame gives them a handful of
  faces, and TensorFlow's per-call cost exceeds their work at that size: on two faces O-Net
  takes 2.8 ms as a TensorFlow graph and 0.74 ms in TFLite, R-Net 1.4 and 0.16 ms
  (bench/README.md, "Video"). Batches are padded to a power of two, one interpreter per size.

Every network's input is MTCNN's: RGB patches as (pixel - 127.5) / 128, float32.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import cv2
import numpy as np

from c3ae_utils import _quiet
from c3ae_utils.faces.detection import Detector

RNET_SIZE, ONET_SIZE = 24, 48  # the patch sides R-Net and O-Net read
GREY = 127.5  # what patches hold outside the image (0 in MTCNN's input scale, as mtcnn pads)


def normalise(pixels: Any) -> Any:
    """MTCNN's input scale: (pixel - 127.5) / 128, float32."""
    return (pixels - 127.5) / 128.0


def cut_patches(images: np.ndarray, boxes: np.ndarray, indices: np.ndarray, side: int) -> np.ndarray:
    """Patches float32 [n, side, side, 3] in MTCNN's input scale of uint8 `images`
    [b, h, w, 3] at `boxes` [n, 4] (x1, y1, x2, y2 pixels; image `indices` [n]): bilinear,
    the corner pixels on the box's corners (as `tf.image.crop_and_resize`), grey outside."""
    patches = np.empty((len(boxes), side, side, 3), np.float32)
    for row, ((x1, y1, x2, y2), index) in enumerate(zip(boxes, indices, strict=True)):
        scale_x = (side - 1) / max(x2 - x1, 1e-6)
        scale_y = (side - 1) / max(y2 - y1, 1e-6)
        matrix = np.array([[scale_x, 0.0, -x1 * scale_x], [0.0, scale_y, -y1 * scale_y]])
        patches[row] = cv2.warpAffine(
            images[index], matrix, (side, side), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=(GREY, GREY, GREY),
        )
    return normalise(patches)


class LiteNetwork:
    """A Keras network float32 [n, *input_shape] -> outputs, converted to TFLite (float32: the
    same numbers within float rounding), run on one thread.

    `outputs` lists the last dimension of each output in the order the Keras network returns
    them (TFLite may list them in another; they must differ); a call returns them in that
    order, float32 [n, d].
    """

    def __init__(self, network: Any, input_shape: tuple[int, ...], outputs: tuple[int, ...]) -> None:
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        spec = tf.TensorSpec([None, *input_shape], tf.float32)
        function = tf.function(lambda inputs: network(inputs, training=False)).get_concrete_function(spec)
        # Weights frozen into the graph: a converted function that reads them as variables
        # outputs NaN (as `inference.export_tflite` found for the C3AE model).
        frozen = convert_variables_to_constants_v2(function)
        self.model = tf.lite.TFLiteConverter.from_concrete_functions([frozen], network).convert()
        self.input_shape, self.outputs = tuple(input_shape), outputs
        self.interpreters: dict[int, Any] = {}

    def __call__(self, inputs: np.ndarray) -> list[np.ndarray]:
        """The network's outputs for `inputs` [n, *input_shape], one array per output."""
        count = len(inputs)
        size = 1 << max(0, count - 1).bit_length()
        interpreter = self._interpreter(size)
        batch = np.zeros((size, *self.input_shape), np.float32)
        batch[:count] = inputs
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], batch)
        interpreter.invoke()
        found = {detail["shape"][-1]: interpreter.get_tensor(detail["index"])[:count]
                 for detail in interpreter.get_output_details()}
        return [found[width] for width in self.outputs]

    def _interpreter(self, size: int) -> Any:
        """The interpreter for batches of `size` (made on first use)."""
        if size not in self.interpreters:
            with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
                warnings.simplefilter("ignore", UserWarning)
                interpreter = _interpreter_class()(model_content=self.model, num_threads=1)
            interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"],
                                            [size, *self.input_shape])
            self.interpreters[size] = _quiet.allocate_tflite_quietly(interpreter)
        return self.interpreters[size]


def _interpreter_class() -> Any:
    """LiteRT's TFLite interpreter when installed, TensorFlow's otherwise (as `inference.runners`)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


class StreamNetworks:
    """The detector's P-Net (a TensorFlow graph over the pyramid), R-Net and O-Net (TFLite)."""

    def __init__(self, detector: Detector) -> None:
        import tensorflow as tf

        # The detector runs each network through a graph wrapper (`detection._GraphNetwork`);
        # these call the Keras networks themselves.
        pnet, rnet, onet = (getattr(stage._model, "network", stage._model) for stage in detector.mtcnn.stages)
        self.pyramid = tf.function(lambda first, sizes: _pyramid_outputs(pnet, first, sizes))
        self._rnet = LiteNetwork(rnet, (RNET_SIZE, RNET_SIZE, 3), (4, 2))  # box offsets, scores
        self._onet = LiteNetwork(onet, (ONET_SIZE, ONET_SIZE, 3), (4, 10, 2))  # offsets, landmarks, scores

    def rnet(self, images: np.ndarray, boxes: np.ndarray, indices: np.ndarray) -> list[np.ndarray]:
        """R-Net on `boxes` [n, 4] of uint8 `images` [b, h, w, 3] (image `indices` [n]):
        box offsets [n, 4] and scores [n, 2]."""
        return self._rnet(cut_patches(images, boxes, indices, RNET_SIZE))

    def onet(self, images: np.ndarray, boxes: np.ndarray, indices: np.ndarray) -> list[np.ndarray]:
        """O-Net on `boxes` [n, 4] of uint8 `images` [b, h, w, 3] (image `indices` [n]):
        box offsets [n, 4], landmarks [n, 10] (xs then ys, fractions of the box) and scores [n, 2]."""
        return self._onet(cut_patches(images, boxes, indices, ONET_SIZE))


def _pyramid_outputs(pnet: Any, first: Any, sizes: tuple[tuple[int, int], ...]) -> list[Any]:
    """P-Net's (regression, classes) on each pyramid level (inside a graph): `first`, the
    first level, uint8 [1, h, w, 3]; `sizes`, every level's (height, width)."""
    import tensorflow as tf

    base = normalise(tf.cast(first, tf.float32))
    levels = [base] + [tf.image.resize(base, size, method="area") for size in sizes[1:]]
    return [pnet(level) for level in levels]


# Each MTCNN's networks, so that every stream (a new `StreamDetector` per video) reuses them.
_COMPILED: weakref.WeakKeyDictionary[Any, StreamNetworks] = weakref.WeakKeyDictionary()


def stream_networks(detector: Detector) -> StreamNetworks:
    """The `StreamNetworks` of `detector`'s MTCNN, shared by every stream (built on first use)."""
    mtcnn = detector.mtcnn
    if mtcnn not in _COMPILED:
        _COMPILED[mtcnn] = StreamNetworks(detector)
    return _COMPILED[mtcnn]
