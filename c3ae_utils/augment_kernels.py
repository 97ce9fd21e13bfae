"""Compiled (Numba) loops of the training augmentation, run without holding Python's GIL.

`pipeline.augment_crops` draws the random parameters in NumPy and calls these kernels; the
rotation itself is one `cv2.remap` call per batch in between. Why compiled loops: the
augmentation runs inside `tf.data`, several batches at once, and Python code holds the
GIL. Here a batch makes three calls that release the GIL, so `tf.data`'s threads really
run in parallel (the measurements behind this choice are in bench/README.md).

Layout: a face is one row of 36,864 bytes, the three scales `[3, 64, 64, 3]` flattened
(RGB, scales outer/middle/inner). Rotated faces go through a tall RGBA image where each
64x64 crop is followed by one black row, so that `cv2.remap` on the whole batch samples
black outside every crop, exactly as `cv2.warpAffine` does with a constant border.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from c3ae_utils.shapes import CHANNELS, CROP_SIZE, NUM_SCALES

PADDED_ROWS = CROP_SIZE + 1  # each crop of the tall image is followed by one black row
FACE_BYTES = NUM_SCALES * CROP_SIZE * CROP_SIZE * CHANNELS
SUBPIXELS = 1024  # map positions are multiples of 1/1024 pixel
MAX_TALL_ROWS = 2**24 // SUBPIXELS  # rows of a tall image whose coordinates float32 holds exactly
FACES_PER_REMAP = MAX_TALL_ROWS // (NUM_SCALES * PADDED_ROWS)  # 84


@numba.njit(nogil=True, cache=True)
def gather_and_flip(source: np.ndarray, rows: np.ndarray, flip: np.ndarray, out: np.ndarray) -> None:
    """out[i] = source[rows[i]], mirrored left-right where flip[i]; uint8 `[n, 36864]` -> `[b, 36864]`."""
    row_bytes = CROP_SIZE * CHANNELS
    for i in range(rows.shape[0]):
        face = source[rows[i]]
        target = out[i]
        if not flip[i]:
            for j in range(FACE_BYTES):
                target[j] = face[j]
            continue
        for line in range(NUM_SCALES * CROP_SIZE):
            start = line * row_bytes
            for x in range(CROP_SIZE):
                to = start + x * CHANNELS
                mirror = start + (CROP_SIZE - 1 - x) * CHANNELS
                for c in range(CHANNELS):
                    target[to + c] = face[mirror + c]


@numba.njit(nogil=True, cache=True)
def rotation_inputs(
    faces: np.ndarray, turned: np.ndarray, matrices: np.ndarray,
    padded: np.ndarray, map_x: np.ndarray, map_y: np.ndarray,
) -> None:
    """Fill the tall RGBA image and the sampling maps for `cv2.remap` of the faces `turned`.

    faces: uint8 `[b, 36864]`; turned: int `[k]` rows of faces; matrices: float64 `[k, 2, 3]`
    output pixel -> input pixel. padded: uint8 `[k * 3, 65, 64, 4]` (written whole);
    map_x, map_y: float32 `[k * 3 * 64, 64]`, tall-image coordinates of each output pixel.
    Coordinates are clamped to [-1, 64] in the crop, where the black row or the image border
    gives 0, so no sample reaches a neighbouring crop.
    """
    for j in range(turned.shape[0]):
        face = faces[turned[j]]
        for s in range(NUM_SCALES):
            tile = padded[j * NUM_SCALES + s]
            for y in range(CROP_SIZE):
                for x in range(CROP_SIZE):
                    at = ((s * CROP_SIZE + y) * CROP_SIZE + x) * CHANNELS
                    for c in range(CHANNELS):
                        tile[y, x, c] = face[at + c]
                    tile[y, x, 3] = 0
            for x in range(CROP_SIZE):
                for c in range(4):
                    tile[CROP_SIZE, x, c] = 0
        m = matrices[j]
        for y in range(CROP_SIZE):
            for x in range(CROP_SIZE):
                sx = min(max(m[0, 0] * x + m[0, 1] * y + m[0, 2], -1.0), float(CROP_SIZE))
                sy = min(max(m[1, 0] * x + m[1, 1] * y + m[1, 2], -1.0), float(CROP_SIZE))
                # Round to 1/1024 pixel so that float32 holds sy plus the crop's offset exactly
                # and the three scales sample the very same positions (at most 1/2048 px off).
                sx = math.floor(sx * SUBPIXELS + 0.5) / SUBPIXELS
                sy = math.floor(sy * SUBPIXELS + 0.5) / SUBPIXELS
                for s in range(NUM_SCALES):
                    crop = j * NUM_SCALES + s
                    map_x[crop * CROP_SIZE + y, x] = sx
                    map_y[crop * CROP_SIZE + y, x] = sy + crop * PADDED_ROWS


@numba.njit(nogil=True, cache=True)
def put_rotated(out: np.ndarray, turned: np.ndarray, rotated: np.ndarray) -> None:
    """Write the RGB of `rotated` uint8 `[k * 3 * 64, 64, 4]` (`cv2.remap`'s output) into rows `turned` of `out`."""
    for j in range(turned.shape[0]):
        target = out[turned[j]]
        for s in range(NUM_SCALES):
            first = (j * NUM_SCALES + s) * CROP_SIZE
            for y in range(CROP_SIZE):
                for x in range(CROP_SIZE):
                    at = ((s * CROP_SIZE + y) * CROP_SIZE + x) * CHANNELS
                    for c in range(CHANNELS):
                        target[at + c] = rotated[first + y, x, c]


@numba.njit(nogil=True, cache=True)
def erase_and_recolor(
    out: np.ndarray, erase: np.ndarray, boxes: np.ndarray, noise: np.ndarray, noise_end: np.ndarray,
    color: np.ndarray, tables: np.ndarray,
) -> None:
    """Erase, then recolour, in place on uint8 `out` `[b, 36864]`.

    boxes: `[b, 4]` (top, left, bottom, right); the noise of sample i is `noise[noise_end[i] -
    h*w*3: noise_end[i]]` as `[h, w, 3]`, the same in its three scales. tables: uint8
    `[b, 256]`, applied where color[i].
    """
    for i in range(out.shape[0]):
        target = out[i]
        if erase[i]:
            top, left, bottom, right = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
            width = (right - left) * CHANNELS
            k = noise_end[i] - (bottom - top) * width
            for y in range(top, bottom):
                for s in range(NUM_SCALES):
                    start = ((s * CROP_SIZE + y) * CROP_SIZE + left) * CHANNELS
                    for w in range(width):
                        target[start + w] = noise[k + w]
                k += width
        if color[i]:
            table = tables[i]
            for j in range(FACE_BYTES):
                target[j] = table[target[j]]


@numba.njit(nogil=True, cache=True)
def finish(
    out: np.ndarray, turned: np.ndarray, rotated: np.ndarray,
    erase: np.ndarray, boxes: np.ndarray, noise: np.ndarray, noise_end: np.ndarray,
    color: np.ndarray, tables: np.ndarray,
) -> None:
    """`put_rotated`, then `erase_and_recolor`: the rest of a batch in one call without the GIL."""
    put_rotated(out, turned, rotated)
    erase_and_recolor(out, erase, boxes, noise, noise_end, color, tables)
