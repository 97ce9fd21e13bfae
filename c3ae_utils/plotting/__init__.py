"""Every figure of the course, one module per topic (notebook). Each function returns its
`matplotlib.figure.Figure`; `save_figure` writes one to `figures/generated/` (or
`C3AE_FIGURES_DIR`). No module of the package imports this one: notebooks do.

| module | the figures of |
| --- | --- |
| `figures` | all of them: the headless backend, `new_figure`, `save_figure` |
| `data` | the datasets (notebook 01) |
| `faces` | detection, alignment, crops and poses (notebook 02) |
| `encoding` | the age encodings and augmented batches (notebook 03) |
| `model` | the model (notebook 04) |
| `training` | the focal loss and training runs (notebook 05) |
| `errors` | the error analysis (notebook 06) |
| `prediction` | prediction and export (notebook 07) |
| `video` | faces tracked through a video: raw against smoothed ages (notebook 07) |

Every topic module imports only `figures`. Contributors: add a figure to the module of its
topic and re-export it here, so `from c3ae_utils import plotting; plotting.NAME` works for
every name below.
"""

from __future__ import annotations

from c3ae_utils.plotting.data import (
    plot_age_gender_distributions,
    plot_age_imbalance,
    plot_cleaning_funnel,
    plot_faces_by_decade,
    plot_raw_age_noise,
)
from c3ae_utils.plotting.encoding import (
    plot_augmented_faces,
    plot_bin_mass,
    plot_label_encodings,
    plot_round_trip_errors,
)
from c3ae_utils.plotting.errors import (
    plot_bin_confusion,
    plot_cumulative_scores,
    plot_error_by_age,
    plot_grouped_errors,
    plot_loso_folds,
    plot_model_comparison,
    plot_w2,
    plot_worst_predictions,
)
from c3ae_utils.plotting.faces import (
    plot_alignment,
    plot_context_boxes,
    plot_detections,
    plot_face_yield,
    plot_failure_gallery,
    plot_pose_distribution,
)
from c3ae_utils.plotting.figures import new_figure, save_figure
from c3ae_utils.plotting.model import (
    plot_c3ae_architecture,
    plot_portrait_predictions,
    plot_se_channel_scales,
)
from c3ae_utils.plotting.prediction import (
    plot_age_agreement,
    plot_annotated_photos,
    plot_latency,
    plot_video_ages,
)
from c3ae_utils.plotting.training import (
    plot_bin_weights,
    plot_focal_vs_cross_entropy,
    plot_learning_curves,
    plot_mae_by_age_bin,
)
from c3ae_utils.plotting.video import plot_track_ages

__all__ = [
    # figures
    "new_figure",
    "save_figure",
    # data (notebook 01)
    "plot_age_gender_distributions",
    "plot_age_imbalance",
    "plot_cleaning_funnel",
    "plot_faces_by_decade",
    "plot_raw_age_noise",
    # faces (notebook 02)
    "plot_alignment",
    "plot_context_boxes",
    "plot_detections",
    "plot_face_yield",
    "plot_failure_gallery",
    "plot_pose_distribution",
    # encoding (notebook 03)
    "plot_augmented_faces",
    "plot_bin_mass",
    "plot_label_encodings",
    "plot_round_trip_errors",
    # model (notebook 04)
    "plot_c3ae_architecture",
    "plot_portrait_predictions",
    "plot_se_channel_scales",
    # training (notebook 05)
    "plot_bin_weights",
    "plot_focal_vs_cross_entropy",
    "plot_learning_curves",
    "plot_mae_by_age_bin",
    # errors (notebook 06)
    "plot_bin_confusion",
    "plot_cumulative_scores",
    "plot_error_by_age",
    "plot_grouped_errors",
    "plot_loso_folds",
    "plot_model_comparison",
    "plot_w2",
    "plot_worst_predictions",
    # prediction (notebook 07)
    "plot_age_agreement",
    "plot_annotated_photos",
    "plot_latency",
    "plot_video_ages",
    # video (notebook 07)
    "plot_track_ages",
]
