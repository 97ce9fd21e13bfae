"""Seeds, the device report (versions, GPUs, Colab) and mixed precision."""

from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass

import keras
import numpy as np


def in_colab() -> bool:
    """True when running inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and Keras (TensorFlow) random generators."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)


@dataclass(frozen=True)
class DeviceReport:
    """What the course runs on."""

    python: str
    tensorflow: str
    keras: str
    gpus: tuple[str, ...]  # model names, e.g. "NVIDIA A100-SXM4-40GB"
    colab: bool

    @property
    def mixed_precision(self) -> bool:
        """Whether `training.train` uses mixed precision by default here (on with a GPU)."""
        return bool(self.gpus)

    def __str__(self) -> str:
        device = ", ".join(self.gpus) if self.gpus else "CPU only"
        return (
            f"Python {self.python} | TensorFlow {self.tensorflow} | Keras {self.keras} | "
            f"device: {device} | mixed precision: {'on' if self.mixed_precision else 'off'} | "
            f"Colab: {'yes' if self.colab else 'no'}"
        )


def _gpu_names(tf) -> tuple[str, ...]:  # noqa: ANN001 (the tensorflow module)
    """The model name of every visible GPU (its device name when TensorFlow cannot tell)."""
    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(details.get("device_name", device.name))
    return tuple(names)


def report_device(verbose: bool = True) -> DeviceReport:
    """Report versions, accelerators and mixed precision; on Colab without a GPU, say how to get one."""
    import tensorflow as tf  # only here: the rest of the course also runs on Keras' JAX backend

    report = DeviceReport(
        python=platform.python_version(),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        gpus=_gpu_names(tf),
        colab=in_colab(),
    )
    if verbose:
        print(report)
        if report.colab and not report.gpus:
            print("No GPU was detected. In Colab: Runtime > Change runtime type > GPU.")
    return report


def enable_mixed_precision(enabled: bool | None = None) -> str:
    """Use "mixed_float16" when a GPU is present (or `enabled` is True); return the policy name."""
    import tensorflow as tf  # only here: the rest of the course also runs on Keras' JAX backend

    if enabled is None:
        enabled = bool(tf.config.list_physical_devices("GPU"))
    policy = "mixed_float16" if enabled else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy
