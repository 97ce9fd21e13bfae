"""c3ae_utils: the reusable code of the C3AE course (compact age estimation, Zhang et al. 2019).

Import modules, not names::

    from c3ae_utils import age_encoding, network
    model = network.build_c3ae()

Importing the package loads nothing heavy, so modules without Keras (`paths`, `datasets`,
`faces`) stay light. Importing any module that handles Keras models (`network`, `training`,
`evaluation`, `inference`) registers all of the package's custom layers, losses and metrics
with Keras (through `network`, see its docstring), so plain `keras.saving.load_model` reads
every model the course saves.
"""

__version__ = "0.1.0"

import os as _os

from c3ae_utils import _quiet

# Before anything loads TensorFlow (here, in one place): its C++ start-up lines ("failed call to
# cuInit" on every CPU machine, oneDNN and CPU-feature notes) and retracing warnings look like
# failures to a learner.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_quiet.silence_tensorflow_import()
