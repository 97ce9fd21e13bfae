"""Faces: decode, detect (MTCNN), align, crop three context scales, estimate pose, cache.

The stage between the metadata tables and training. Every image in the package is an RGB
`uint8 [height, width, 3]` array, and `read_image` is the one place that decodes a file;
crops are RGB `uint8 [3, 64, 64, 3]` (`shapes.CROPS_SHAPE`), outer/middle/inner.

    image = faces.read_image(path)                       # uint8 [h, w, 3], RGB
    found = faces.detect_faces(image)                    # list[Face], most confident first
    aligned = faces.align_face(image, found[0])          # chip with the eyes level
    crops = faces.context_crops(aligned.image, aligned.face)   # uint8 [3, 64, 64, 3]
    result = faces.process_image(path, policy="train")   # all of the above, or a failure reason
    folder = faces.build_cache(table, "utkface")         # a whole table, on every core

| module (each imports only those above it) | what it is for |
| --- | --- |
| `images` | `read_image`, `ImageError`: files to RGB arrays |
| `detection` | `Face`, `Detector` (MTCNN), `detect_faces`, `box_iou` |
| `alignment` | `align_face(s)`, `warp_to_chip`, the landmark template and transforms |
| `crops` | `context_boxes`, `crop_box`, `context_crops`: the three scales |
| `pose` | `estimate_pose`: yaw, pitch, roll in degrees |
| `processing` | `process_image(s)`, `Settings`, the policies and failure reasons |
| `cluster` | the Dask cluster the chunks run on |
| `stream_networks` | MTCNN's networks compiled for streams (P-Net graph, R-/O-Net TFLite) |
| `tracking` | `StreamDetector`: detection on a schedule, R-/O-Net follower, O-Net on the chip |
| `cache_files` | the files of a cache: names, `config.json`, chunk files, manifest |
| `cache_checksums` | the record (size, SHA-256) of each file a build wrote, and the check |
| `cache_chunks` | one chunk: its job, its rows, the worker that writes it |
| `cache_build` | `build_cache`: chunk jobs run here or on the cluster, the manifest |
| `cache_load` | `load_cache`, `FaceCache`, `yield_table` |
| `cli` | `build_parser`, `main`: the `c3ae cache` command line |
| `cache` | the cache's public face: every name above that other modules use |

Everything public is re-exported here, so `from c3ae_utils import faces; faces.NAME` works
for every name below. Importing the package is light: TensorFlow and MTCNN load when a
detector is first used.
"""

from __future__ import annotations

from c3ae_utils.faces.alignment import (
    ALIGN_PADDING,
    CHIP_SIZE,
    FACE_TEMPLATE,
    REDETECT_SIZE,
    AlignedFace,
    align_face,
    align_faces,
    eyes_level_transform,
    similarity_transform,
    template_landmarks,
    warp_to_chip,
)
from c3ae_utils.faces.cache import (
    CACHE_FORMAT,
    CHUNK_SIZE,
    RESULT_COLUMNS,
    FaceCache,
    build_cache,
    cache_name,
    cache_path,
    default_workers,
    finished_caches,
    is_finished,
    load_cache,
    yield_table,
)
from c3ae_utils.faces.cli import build_parser, main
from c3ae_utils.faces.crops import context_boxes, context_crops, crop_box
from c3ae_utils.faces.detection import (
    LANDMARK_NAMES,
    Detector,
    Face,
    box_iou,
    default_detector,
    detect_faces,
)
from c3ae_utils.faces.images import (
    MIN_IMAGE_SIDE,
    REASON_TOO_SMALL_IMAGE,
    REASON_UNREADABLE,
    ImageError,
    check_rgb,
    read_image,
)
from c3ae_utils.faces.pose import FACE_MODEL_3D, estimate_pose
from c3ae_utils.faces.processing import (
    MIN_FACE_SIZE,
    POLICIES,
    REASON_NO_FACE,
    REASON_SECOND_FACE,
    REASON_SMALL_FACE,
    REASONS,
    ProcessedFace,
    ProcessResult,
    Settings,
    SkippedFace,
    process_image,
    process_images,
)
from c3ae_utils.faces.tracking import StreamDetector

__all__ = [
    "StreamDetector",
    # shapes (re-exported)
    # images
    "MIN_IMAGE_SIDE",
    "REASON_TOO_SMALL_IMAGE",
    "REASON_UNREADABLE",
    "ImageError",
    "check_rgb",
    "read_image",
    # detection
    "LANDMARK_NAMES",
    "Detector",
    "Face",
    "box_iou",
    "default_detector",
    "detect_faces",
    # alignment
    "ALIGN_PADDING",
    "CHIP_SIZE",
    "FACE_TEMPLATE",
    "REDETECT_SIZE",
    "AlignedFace",
    "align_face",
    "align_faces",
    "eyes_level_transform",
    "similarity_transform",
    "template_landmarks",
    "warp_to_chip",
    # crops
    "context_boxes",
    "context_crops",
    "crop_box",
    # pose
    "FACE_MODEL_3D",
    "estimate_pose",
    # processing
    "MIN_FACE_SIZE",
    "POLICIES",
    "REASONS",
    "REASON_NO_FACE",
    "REASON_SECOND_FACE",
    "REASON_SMALL_FACE",
    "ProcessResult",
    "ProcessedFace",
    "Settings",
    "SkippedFace",
    "process_image",
    "process_images",
    # cache
    "CACHE_FORMAT",
    "CHUNK_SIZE",
    "RESULT_COLUMNS",
    "FaceCache",
    "build_cache",
    "cache_name",
    "cache_path",
    "default_workers",
    "finished_caches",
    "is_finished",
    "load_cache",
    "build_parser",
    "main",
    "yield_table",
]
