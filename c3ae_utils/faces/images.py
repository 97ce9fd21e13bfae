"""Reading images: the one place that decodes a file into pixels.

Contract: every image in the `faces` package is a NumPy RGB `uint8 [height, width, 3]`
array (channels in R, G, B order, 0-255). `read_image` makes one from any file Pillow (or,
as a fallback, OpenCV) can decode; `check_rgb` validates one handed in by a caller. A file
that cannot be used raises `ImageError`, a `ValueError` whose `reason` names the problem in
a few words.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

REASON_UNREADABLE = "unreadable"
REASON_TOO_SMALL_IMAGE = "image too small"

# Images with a shorter side under this many pixels are refused ("image too small"):
# MTCNN's first network needs a 12 x 12 window.
MIN_IMAGE_SIDE = 12

# Pillow modes holding more than 8 bits of grey per pixel (16-bit, 32-bit integer, float).
_DEEP_GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageError(ValueError):
    """A file that cannot be turned into an RGB image; `reason` says why in a few words."""

    def __init__(self, path: str | Path, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        message = f"Cannot read image {self.path}: {reason}"
        super().__init__(f"{message} ({detail})" if detail else message)


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Return `image` as an array after checking it is RGB `uint8 [h, w, 3]` (else ValueError)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"Expected an RGB uint8 [height, width, 3] image, got {image.dtype} {image.shape}; "
            "decode files with faces.read_image."
        )
    return image


def _deep_grey_to_rgb(pil_image: Image.Image) -> np.ndarray:
    """A 16-bit, 32-bit or float greyscale image scaled to 0-255: RGB uint8 [h, w, 3]."""
    mode = pil_image.mode
    values = np.asarray(pil_image, dtype=np.float64)
    # Scale the range the format allows down to 0-255.
    top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    if mode == "F":
        top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
    grey = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _has_alpha(pil_image: Image.Image) -> bool:
    """True when the image carries transparency (an alpha band or a transparent palette entry)."""
    mode = pil_image.mode
    return mode in _ALPHA_MODES or (mode == "P" and "transparency" in pil_image.info)


def _on_white(pil_image: Image.Image) -> Image.Image:
    """Composite a transparent image onto white, as an image viewer shows it (RGBA result)."""
    rgba = pil_image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba)


def _to_uint8_rgb(pil_image: Image.Image) -> np.ndarray:
    """Convert any PIL mode (L, P, LA, RGBA, CMYK, I;16, I, F, ...) to RGB uint8 [h, w, 3]."""
    if pil_image.mode in _DEEP_GREY_MODES:
        return _deep_grey_to_rgb(pil_image)
    if _has_alpha(pil_image):
        pil_image = _on_white(pil_image)
    rgb = pil_image.convert("RGB")  # also handles CMYK (incl. Adobe-inverted JPEG), YCbCr, 1, L
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _read_with_opencv(path: Path, error: Exception) -> np.ndarray:
    """Decode a file Pillow does not know with OpenCV (which applies EXIF too): RGB uint8."""
    decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if decoded is None or decoded.size == 0:
        raise ImageError(path, "corrupt or unsupported file", str(error)) from error
    return np.ascontiguousarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file into RGB `uint8 [height, width, 3]`.

    Applies the EXIF orientation, expands greyscale, converts CMYK, composites alpha onto
    white and scales 16-bit images to 8 bits. Raises `ImageError` (a `ValueError`) with a
    short `reason` ("missing file", "empty file", "corrupt or unsupported file",
    "unreadable file") when the file cannot be used.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "missing file", "check the path or re-extract the dataset")
    try:
        if path.stat().st_size == 0:
            raise ImageError(path, "empty file", "zero bytes")
        with Image.open(path) as opened:
            opened.load()
            return _to_uint8_rgb(ImageOps.exif_transpose(opened))
    except ImageError:
        raise
    except PermissionError as error:
        raise ImageError(path, "unreadable file", str(error)) from error
    except UnidentifiedImageError as error:
        return _read_with_opencv(path, error)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # Truncated or damaged data: refuse rather than train on half an image.
        detail = f"{type(error).__name__}: {error}"
        raise ImageError(path, "corrupt or unsupported file", detail) from error
