"""Silence TensorFlow's start-up lines, which it writes to file descriptor 2 before its own
log level applies (so `TF_CPP_MIN_LOG_LEVEL` alone cannot hide them).

`silence_tensorflow_import()` installs an import hook: the first `import tensorflow` (by
Keras, MTCNN or the package) runs with file descriptor 2 pointed at /dev/null, then the hook
removes itself. Python-level errors of that import still propagate as usual. Nothing is
imported early: modules that never need TensorFlow stay light.

TensorFlow's Python logger is then set to ERROR: its "triggered tf.function retracing"
warnings fire because each model the course loads traces its own predict step on purpose,
which is not the performance bug they suspect. (TensorFlow sets that logger to INFO when it
is first used in an interactive shell such as Jupyter, so it is set after the import.)

Two more lines reach a learner the same way, and are stopped where they start:

- `allocate_tflite_quietly(interpreter)`: TFLite's C++ runtime prints "INFO: Created
  TensorFlow Lite XNNPACK delegate for CPU." to file descriptor 2 (whatever
  `TF_CPP_MIN_LOG_LEVEL` says) when its first interpreter allocates its tensors;
- `kernel_manager_config()`: the notebook runner's kernels talk to it over CurveZMQ-encrypted
  sockets, so ipykernel has no "Kernel is running over TCP without encryption" warning to
  print for every notebook (an encrypted kernel, not a hidden warning).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import TypeVar

Interpreter = TypeVar("Interpreter")


@contextlib.contextmanager
def stderr_fd_silenced() -> Iterator[None]:
    """Point file descriptor 2 (C-level stderr) at /dev/null for the duration of the block."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's `exec_module` with file descriptor 2 silenced."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__.loader = self.loader  # the module keeps its real loader afterwards
        module.__loader__ = self.loader
        with stderr_fd_silenced():
            self.loader.exec_module(module)
        _quiet_python_logger(module)


def _quiet_python_logger(tensorflow: ModuleType) -> None:
    """TensorFlow's Python logger at ERROR (creating it first, so TensorFlow cannot reset it)."""
    get_logger = getattr(tensorflow, "get_logger", None)
    if get_logger is not None:
        get_logger().setLevel(logging.ERROR)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` with the other finders and wraps its loader in `_QuietLoader`, once."""

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201 (importlib's signature)
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def silence_tensorflow_import() -> None:
    """Install the hook unless TensorFlow is already loaded (or the hook already installed)."""
    if "tensorflow" in sys.modules:  # loaded before the package: its start-up lines are out already
        _quiet_python_logger(sys.modules["tensorflow"])
        return
    if any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


def allocate_tflite_quietly(interpreter: Interpreter) -> Interpreter:
    """`interpreter.allocate_tensors()` with file descriptor 2 silenced; the same interpreter.

    A TFLite interpreter applies its default XNNPACK delegate when it first allocates its
    tensors, and the C++ runtime then prints one INFO line per process to fd 2. A failure
    still raises its Python exception.
    """
    with stderr_fd_silenced():
        interpreter.allocate_tensors()
    return interpreter
