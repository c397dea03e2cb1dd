"""eGeMAPS v02 functionals from openSMILE: the classic 88-dimensional paralinguistic baseline."""

from __future__ import annotations

import numpy as np

from models.errors import UserError
from models.audio import SAMPLE_RATE


class EgemapsExtractor:
    """audio float32 [n] at 16 kHz -> float32 [88] eGeMAPSv02 functionals."""

    def __init__(self) -> None:
        try:
            import opensmile
        except ImportError as err:
            raise UserError("eGeMAPS needs openSMILE: pip install 'emostream[egemaps]'") from err
        self._version = opensmile.__version__
        self._smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02,
            feature_level=opensmile.FeatureLevel.Functionals,
        )

    def identity(self) -> dict[str, str]:
        return {"name": "egemaps-v02", "sha256": f"opensmile-{self._version}-egemapsv02"}

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self._smile.process_signal(audio, SAMPLE_RATE).to_numpy(np.float32)[0]
