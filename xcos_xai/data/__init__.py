"""Data: the one image-loading path, the one alignment path, LFW, and training data sets."""

from .folders import IdentityFolders, LFWPeople
from .insightface import BinPairs, InsightFaceFormatError, RecordFaces, read_bin
from .samplers import AnchorPairSampler, epoch_pairs

__all__ = ["AnchorPairSampler", "BinPairs", "IdentityFolders", "InsightFaceFormatError",
           "LFWPeople", "RecordFaces", "epoch_pairs", "read_bin"]
