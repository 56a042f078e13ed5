"""Data: the one image-loading path, the alignment paths, LFW, and training data sets.

- :func:`load_image` (``images``): every image input (path, bytes, PIL, array, tensor).
- :class:`FaceAligner`, :func:`lfw_aligner`, :func:`faces_to_tensor` (``align``): photos to
  the aligned face chips a model expects (dlib's chips), and chips to a batch tensor.
- :class:`~xcos_xai.data.align_arcface.YuNetAligner` (``align_arcface``): YuNet + the ArcFace
  5-point template (SFace); :func:`aligner_for` (``aligners``) picks one from a model's
  input spec.
- :class:`LFW` (``lfw``): LFW and its official View-2 pairs and people folds.
- Training sets: identity folders, LFW people, InsightFace ``.rec``/``.bin``, samplers.
"""

from .align import AlignedFace, FaceAligner, NoFaceError, faces_to_tensor, lfw_aligner
from .aligners import aligner_for
from .folders import IdentityFolders, LFWPeople
from .images import ImageError, load_image
from .insightface import BinPairs, InsightFaceFormatError, RecordFaces, read_bin
from .lfw import LFW
from .samplers import AnchorPairSampler, epoch_pairs

__all__ = ["LFW", "AlignedFace", "AnchorPairSampler", "BinPairs", "FaceAligner",
           "IdentityFolders", "ImageError", "InsightFaceFormatError", "LFWPeople",
           "NoFaceError", "RecordFaces", "aligner_for", "epoch_pairs", "faces_to_tensor",
           "lfw_aligner", "load_image", "read_bin"]
