"""Classification figures as the SER/ERC papers report them.

WA = accuracy; UA = unweighted (macro) recall; WF1 = support-weighted F1; UWF1 = macro F1.
ECE = expected calibration error of the top-class probability (when probabilities are given).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


@dataclass(frozen=True)
class Scores:
    """Figures for one evaluation; ``confusion[i][j]`` counts true class i predicted as j."""

    labels: tuple[str, ...]
    wa: float
    ua: float
    wf1: float
    uwf1: float
    n: int
    n_excluded: int
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    ece: float | None = None  # expected calibration error, 0..1; None without probabilities
    subsets: dict[str, "Scores"] = field(default_factory=dict)  # e.g. "shift": emotion-change turns

    def to_dict(self) -> dict:
        return {
            "wa": self.wa, "ua": self.ua, "wf1": self.wf1, "uwf1": self.uwf1, "ece": self.ece,
            "n": self.n, "n_excluded": self.n_excluded, "labels": list(self.labels),
            "per_class": self.per_class, "confusion": self.confusion,
            "subsets": {name: sub.to_dict() for name, sub in self.subsets.items()},
        }

    def with_subsets(self, subsets: dict[str, "Scores"]) -> "Scores":
        """The same figures with scores on named subsets of the items attached."""
        return replace(self, subsets=subsets)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the top-class probability (Guo et al. 2017), in [0, 1].

    probs: float [N, C] rows summing to 1; y_true: int [N]. Predictions are binned by their
    confidence (max probability) into ``n_bins`` equal-width bins over [0, 1]; ECE is the
    sample-weighted mean over bins of |accuracy - mean confidence|. 0 for N = 0.
    """
    if len(y_true) == 0:
        return 0.0
    confidence = probs.max(axis=1)                                          # [N]
    correct = probs.argmax(axis=1) == y_true                                # [N]
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)        # [N], 1.0 in the top bin
    gap = 0.0
    for b in np.unique(bins):
        members = bins == b
        gap += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap / len(y_true))


def score(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...], n_excluded: int = 0,
          probs: np.ndarray | None = None) -> Scores:
    """Score integer predictions. y_true, y_pred: int [N] class indices into ``labels``;
    probs: float [N, C] class probabilities, when given, for the ECE.

    Classes absent from ``y_true`` still appear (recall 0/0 counted as 0 and left out of UA).
    """
    ids = np.arange(len(labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    present = support > 0
    return Scores(
        labels=tuple(labels),
        wa=float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        ua=float(recall[present].mean()) if present.any() else 0.0,
        wf1=float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        uwf1=float(f1[present].mean()) if present.any() else 0.0,
        n=int(len(y_true)),
        n_excluded=int(n_excluded),
        per_class={
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        confusion=confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        ece=None if probs is None else expected_calibration_error(probs, y_true),
    )


def format_scores(scores: Scores) -> str:
    """Human-readable report: headline figures, per-class table, confusion matrix."""
    lines = [
        f"n={scores.n} (excluded {scores.n_excluded})",
        f"WA {100 * scores.wa:.2f}  UA {100 * scores.ua:.2f}  "
        f"WF1 {100 * scores.wf1:.2f}  UWF1 {100 * scores.uwf1:.2f}"
        + ("" if scores.ece is None else f"  ECE {100 * scores.ece:.2f}"),
        "",
        f"{'class':<12}{'prec':>7}{'recall':>8}{'f1':>7}{'n':>7}",
    ]
    for name, c in scores.per_class.items():
        lines.append(
            f"{name:<12}{100 * c['precision']:>7.1f}{100 * c['recall']:>8.1f}"
            f"{100 * c['f1']:>7.1f}{c['support']:>7d}"
        )
    width = max(6, max(len(n) for n in scores.labels) + 1)
    lines += ["", "confusion (rows: true, columns: predicted)",
              " " * width + "".join(f"{n[:width - 1]:>{width}}" for n in scores.labels)]
    for name, row in zip(scores.labels, scores.confusion):
        lines.append(f"{name[:width - 1]:<{width}}" + "".join(f"{v:>{width}d}" for v in row))
    for name, sub in scores.subsets.items():
        lines += ["", f"{name}: n={sub.n}  WA {100 * sub.wa:.2f}  UA {100 * sub.ua:.2f}  "
                      f"WF1 {100 * sub.wf1:.2f}  UWF1 {100 * sub.uwf1:.2f}"]
    return "\n".join(lines)
