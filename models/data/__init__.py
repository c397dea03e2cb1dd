"""Dataset loaders: every supported corpus layout read into one list of :class:`Sample` s.

    from models.data import load_dataset, dialogues
    result = load_dataset("iemocap-text", Path("../shared/data/text/iemocap"), split="train")
    for dialogue in dialogues(result.samples): ...
"""

from models.data.registry import DATASETS, Loader, load_dataset
from models.data.sample import LoadResult, Sample, Split, dialogues

__all__ = ["DATASETS", "LoadResult", "Loader", "Sample", "Split", "dialogues", "load_dataset"]
