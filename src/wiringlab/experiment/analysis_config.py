"""Analysis options of a recipe (its `analysis` key): what the report computes over a results
folder. They never change a run, so changing them and re-running only rebuilds the report.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .strict import StrictModel

__all__ = ["SymmetryAnalysisConfig", "SimilarityAnalysisConfig", "EpochsToThresholdConfig", "AnalysisConfig",
           "DEFAULT_THRESHOLD_FRACTIONS"]


class SymmetryAnalysisConfig(StrictModel):
    """Within-network symmetry of snapshotted layers (report section; needs `snapshots`)."""

    overlap_threshold: float = Field(default=0.95, gt=0.0, le=1.0)  # overlap: |cos| > this (1: duplicates)
    scatter_epochs: list[Annotated[int, Field(ge=0)]] | None = None  # cos(t) vs cos(0) panels; None: 3 spread
    max_scatter_points: int = Field(default=20000, gt=0)  # pairs drawn per panel (seeded subsample)


class SimilarityAnalysisConfig(StrictModel):
    """Cross-seed similarity of finished runs (report section; needs saved weights)."""

    enabled: bool = True  # pairs of seeds of the same config, whenever a config has >= 2 runs
    across_configs: bool = False  # also every pair of runs from two different configs
    test_samples: int = Field(default=1000, gt=1)  # first N test samples for CKA and permutation sensitivity
    # how hidden units are aligned: "forward", one pass scoring incoming weights (match_weights);
    # "full", Git Re-Basin coordinate descent over incoming and outgoing weights (rebasin_weights)
    matching: Literal["forward", "full"] = "forward"


Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
DEFAULT_THRESHOLD_FRACTIONS = (0.90, 0.95, 0.99)  # of the best config's mean final test accuracy


class EpochsToThresholdConfig(StrictModel):
    """The first epoch each config's test accuracy reaches given levels (report section)."""

    # levels as fractions of the best config's mean final test accuracy (suit any dataset);
    # None: DEFAULT_THRESHOLD_FRACTIONS unless `levels` is given (None, not the list, so that the
    # recipe.json dump of a recipe with levels validates again)
    fractions: list[Fraction] | None = Field(default=None, min_length=1)
    levels: list[Fraction] | None = Field(default=None, min_length=1)  # test accuracies; replace fractions

    @model_validator(mode="after")
    def _one_kind(self):
        if self.levels is not None and self.fractions is not None:
            raise ValueError("give levels (test accuracies) or fractions (of the best config's final accuracy), "
                             "not both")
        return self


class AnalysisConfig(StrictModel):
    """Analyses the report runs over a results folder (recipe key `analysis`)."""

    symmetry: SymmetryAnalysisConfig = Field(default_factory=SymmetryAnalysisConfig)
    similarity: SimilarityAnalysisConfig = Field(default_factory=SimilarityAnalysisConfig)
    epochs_to_threshold: EpochsToThresholdConfig = Field(default_factory=EpochsToThresholdConfig)
