"""Do two backends find the same objects? The one implementation is the engine verifier's
(``perception_core.engine.agreement``); the bench's reports and tests use it under these names."""

from perception_core.engine.agreement import MIN_IOU, agreement, confident_agreement, matched_ious

__all__ = ['MIN_IOU', 'agreement', 'confident_agreement', 'matched_ious']
