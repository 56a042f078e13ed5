"""Data: the one image-loading path, the alignment paths (dlib's chips, YuNet + ArcFace;
:func:`aligner_for` picks one from a model's input spec), LFW, and training data sets."""

from .aligners import aligner_for
from .folders import IdentityFolders, LFWPeople
from .insightface import BinPairs, InsightFaceFormatError, RecordFaces, read_bin
from .samplers import AnchorPairSampler, epoch_pairs

__all__ = ["AnchorPairSampler", "BinPairs", "IdentityFolders", "InsightFaceFormatError",
           "LFWPeople", "aligner_for", "RecordFaces", "epoch_pairs", "read_bin"]
