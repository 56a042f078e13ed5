"""Data: the one image-loading path, the one alignment path, LFW, and training data sets.

- :func:`load_image` (``images``): every image input (path, bytes, PIL, array, tensor).
- :class:`FaceAligner`, :func:`lfw_aligner`, :func:`faces_to_tensor` (``align``): photos to
  the aligned face chips a model expects, and chips to a batch tensor.
- :class:`LFW` (``lfw``): LFW and its official View-2 pairs and people folds.
- Training sets: identity folders, LFW people, InsightFace ``.rec``/``.bin``, samplers.
"""

from .align import AlignedFace, FaceAligner, NoFaceError, faces_to_tensor, lfw_aligner
from .folders import IdentityFolders, LFWPeople
from .images import ImageError, load_image
from .insightface import BinPairs, InsightFaceFormatError, RecordFaces, read_bin
from .lfw import LFW
from .samplers import AnchorPairSampler, epoch_pairs

__all__ = ["LFW", "AlignedFace", "AnchorPairSampler", "BinPairs", "FaceAligner",
           "IdentityFolders", "ImageError", "InsightFaceFormatError", "LFWPeople",
           "NoFaceError", "RecordFaces", "epoch_pairs", "faces_to_tensor", "lfw_aligner",
           "load_image", "read_bin"]
