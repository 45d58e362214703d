"""Dataset readers (Market-1501, DukeMTMC-reID, MSMT17, CUHK03, CUHK03-NP, synthetic) and the
synthetic generator. Every reader returns a ReIDDataset: train pids relabelled 0..K-1, camids 0-based.

    from training.datasets import load_dataset
    ds = load_dataset("market1501", "data/market1501")
"""

from training.datasets.base import DatasetError, ImageRecord, ReIDDataset
from training.datasets.registry import DATASET_NAMES, load_dataset

__all__ = ["DATASET_NAMES", "DatasetError", "ImageRecord", "ReIDDataset", "load_dataset"]
