"""Head pose (yaw, pitch, roll) from the five MTCNN landmarks.

Contract: landmarks are float `[5, 2]` (x, y) pixels in the `Face` order (left eye, right
eye, nose, mouth left, mouth right); the image shape is (height, width, ...); angles come
back in degrees. The estimate fits a generic face, so it is rough: good for filtering and
grouping faces, not for measuring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

# A generic 3D face for the pose estimate, in millimetres, x right, y down, z away from the
# camera (the nose tip is the origin and the closest point to the camera).
FACE_MODEL_3D = np.array(
    [
        [-32.0, -34.0, 28.0],  # left eye
        [32.0, -34.0, 28.0],  # right eye
        [0.0, 0.0, 0.0],  # nose tip
        [-26.0, 32.0, 22.0],  # mouth left
        [26.0, 32.0, 22.0],  # mouth right
    ],
    dtype=np.float64,
)
_MODEL_EYE_DISTANCE_MM = 64.0  # distance between FACE_MODEL_3D's eyes


def _camera_matrix(height: int, width: int) -> np.ndarray:
    """A pinhole camera, float64 [3, 3]: focal length = the longer side, centre = the middle."""
    focal = float(max(height, width))
    return np.array([[focal, 0, width / 2.0], [0, focal, height / 2.0], [0, 0, 1]], dtype=np.float64)


def _initial_translation(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """A starting guess for the face's position, float64 [3, 1] millimetres, from eye spacing."""
    focal = float(max(height, width))
    eye_distance = max(float(np.linalg.norm(points[1] - points[0])), 1.0)
    depth = focal * _MODEL_EYE_DISTANCE_MM / eye_distance
    nose = points[2]
    guess = np.array([(nose[0] - width / 2) * depth / focal, (nose[1] - height / 2) * depth / focal, depth])
    return guess.reshape(3, 1).copy()


def _euler_degrees(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a 3 x 3 rotation = Rz(roll) @ Ry(yaw) @ Rx(pitch)."""
    pitch = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    yaw = math.degrees(math.asin(float(np.clip(-rotation[2, 0], -1.0, 1.0))))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    return float(yaw), float(pitch), float(roll)


def estimate_pose(landmarks: np.ndarray, image_shape: Sequence[int]) -> tuple[float, float, float]:
    """Head pose (yaw, pitch, roll) in degrees from 5 landmarks (float [5, 2] pixels).

    `cv2.solvePnP` fits a generic 3D face (`FACE_MODEL_3D`) with a pinhole camera of focal
    length = the image's longer side. Signs: yaw > 0 when the face turns towards the image's
    right, pitch > 0 when it tilts down, roll > 0 when it rotates clockwise in the image.
    Returns NaNs when the fit fails.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    height, width = int(image_shape[0]), int(image_shape[1])
    ok, rotation_vector, _ = cv2.solvePnP(
        FACE_MODEL_3D,
        points,
        _camera_matrix(height, width),
        None,
        np.zeros((3, 1)),
        _initial_translation(points, height, width),
        useExtrinsicGuess=True,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        return float("nan"), float("nan"), float("nan")
    rotation, _ = cv2.Rodrigues(rotation_vector)
    return _euler_degrees(rotation)
