"""The array shapes every stage of the course agrees on (one home for them).

A face reaches the model as three square RGB crops of one aligned face, ordered from the
most context to the least: `crops` uint8 or float32 `[n, NUM_SCALES, CROP_SIZE, CROP_SIZE, 3]`
with raw 0-255 values. `faces` cuts them, `pipeline` batches them, `network` reads them.
"""

from __future__ import annotations

CROP_SIZE = 64  # pixels per side of each crop (C3AE's input, Zhang et al. 2019)
SCALE_NAMES = ("outer", "middle", "inner")
NUM_SCALES = len(SCALE_NAMES)
CHANNELS = 3  # RGB
CROPS_SHAPE = (NUM_SCALES, CROP_SIZE, CROP_SIZE, CHANNELS)  # one face, without the batch axis
