"""Figures of faces tracked through a video (notebook 07): one face's age along the clip, the
model's answer on each frame against the age smoothed over its track."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from c3ae_utils.plotting.figures import new_figure


def plot_track_ages(rows: pd.DataFrame, track: int | None = None, title: str | None = None) -> Figure:
    """One face's age (years) against time (s): this frame's prediction (`age_raw`, dots) and
    the age smoothed over the track (`age_smoothed`, line).

    `rows`: `predict_video`'s rows with tracking (the default), or its CSV read back, with
    `time_s`, `track`, `age_raw` and `age_smoothed`; `track`: the face to show (default: the
    track seen in the most frames).
    """
    tracked = rows.dropna(subset=["track"])
    if tracked.empty:
        raise ValueError("No tracked faces in these rows: predict the video with tracking (the default).")
    track = int(tracked["track"].value_counts().idxmax()) if track is None else track
    face = tracked[tracked["track"] == track].sort_values("time_s")
    if face.empty:
        raise ValueError(f"No face of track {track}; the tracks are {sorted(tracked['track'].unique())}.")
    figure, axes = new_figure(width=7.0, height=3.5)
    axis = axes[0, 0]
    axis.plot(face["time_s"], face["age_raw"], linestyle="none", marker="o", markersize=3, alpha=0.6,
              label="raw: the model on this frame")
    axis.plot(face["time_s"], face["age_smoothed"], linewidth=2, label="smoothed over the track")
    axis.set(xlabel="time (s)", ylabel="age (years)", title=title or f"Track {track}: raw and smoothed age")
    axis.legend(fontsize=8)
    return figure
