#!/usr/bin/env bash
# The lowest stack the package accepts (pyproject.toml: TensorFlow >=2.19, Keras >=3.10), as on a
# Colab runtime that keeps its own: a new virtual environment (outside the checkout) with
# TensorFlow 2.19.1 and Keras 3.10.0, this checkout installed into it with its dependencies
# (pip must keep that stack), then the installed shipped model loaded with its defaults and run
# on a real photo of the data mirror. Usage: C3AE_DATA_MIRROR=... bash .ci/lowest_stack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${C3AE_DATA_MIRROR:?set C3AE_DATA_MIRROR to the data mirror (shared/data)}"
PHOTO="$C3AE_DATA_MIRROR/demo/ageitgey_face_recognition/two_people.jpg"
STACK=(tensorflow==2.19.1 keras==3.10.0)
PYTHON="${PYTHON:-python3}"
[ -f "$PHOTO" ] || { echo "error: $PHOTO is missing" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$SECONDS
# The files git sees (tracked or new, not ignored), so the build writes nothing into the checkout.
mkdir "$work/source"
git ls-files -z --cached --others --exclude-standard \
  | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$work/source" -xf -
"$PYTHON" -m venv "$work/venv"
# OpenCV comes with Colab (the package's `local` extra elsewhere); no other extra is needed.
"$work/venv/bin/pip" install -q --disable-pip-version-check "${STACK[@]}" opencv-python-headless "$work/source"
"$work/venv/bin/pip" check
installed=$SECONDS

cd "$work"  # away from the checkout: the installed copy and its package data are what runs
# TensorFlow's start-up lines go to a file, shown only when the check fails.
if ! "$work/venv/bin/python" - "$PHOTO" "${STACK[@]}" 2>"$work/stderr" <<'EOF'
"""The installed default weights load and predict two plausible ages; the TFLite twin agrees."""
import sys

import keras
import numpy as np
import tensorflow as tf

from c3ae_utils import faces, inference, network

photo, *stack = sys.argv[1:]
found = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
assert found == stack, f"pip changed the stack: {found}, expected {stack}"
weights = network.resolve_weights(None)
assert "site-packages" in weights.parts, f"not the installed copy: {weights}"
estimator = inference.AgeEstimator.from_weights()
ages = sorted(face.age for face in estimator.predict_image(faces.read_image(photo)))
assert len(ages) == 2 and all(40 <= age <= 80 for age in ages), f"two_people.jpg: ages {ages}"
crops = np.random.default_rng(0).integers(0, 256, (4, 3, 64, 64, 3), dtype=np.uint8)
runner = inference.load_runner(weights.with_name("c3ae_utkface_fp16.tflite"))
gap = np.abs(network.predict_ages(estimator.model, crops)["age"] - network.predict_ages(runner, crops)["age"]).max()
assert gap < 0.1, f"the float16 TFLite twin differs by {gap:.3f} years"
print(f"lowest stack ({' '.join(found)}): {weights.name} loads; two_people.jpg ages "
      f"{', '.join(f'{age:.1f}' for age in ages)}; TFLite twin within {gap:.3f} years")
EOF
then
  cat "$work/stderr" >&2
  echo "error: the shipped model fails at the lowest accepted stack (${STACK[*]})" >&2
  exit 1
fi
echo "lowest stack: install $((installed - started)) s, check $((SECONDS - installed)) s"
