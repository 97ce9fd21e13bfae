"""The signature every C3AE model has (one input `crops` `[None, 3, 64, 64, 3]`, outputs
`age` `[None, 1]` and `distribution` `[None, 12]`), and the check that a loaded model has it."""

from __future__ import annotations

import os

import keras

from c3ae_utils import age_encoding
from c3ae_utils.network.weight_files import WEIGHTS_ADVICE
from c3ae_utils.shapes import CROPS_SHAPE

# What every model `load_model` returns takes and gives (batch axis None).
EXPECTED_INPUTS = [(None, *CROPS_SHAPE)]
EXPECTED_OUTPUTS = {"age": (None, 1), "distribution": (None, age_encoding.NUM_BINS)}


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

