"""Hungarian matchers of the five systems: predictions to ground-truth instances, per
video. The criteria (``ifr.modeling.criterion``) build them and compute their losses on the
assignment.

- ``VideoHungarianMatcher``: IFR (Eq. 4) and Mask2Former-VIS, class and point-sampled mask
  costs of clip-level queries;
- ``IFCMatcher``: class and the Dice of dense clip volumes;
- ``VisTRSequenceMatcher``: instance sequences, class, boxes and optional mask terms;
- ``TeViTMatcher``: class (focal), boxes, averaged over the frames an instance is in.
"""

from .ifc import IFCMatcher
from .point_set import VideoHungarianMatcher
from .tevit import TeViTMatcher
from .vistr import VisTRSequenceMatcher

__all__ = ["IFCMatcher", "TeViTMatcher", "VideoHungarianMatcher", "VisTRSequenceMatcher"]
