"""TFDS's catalog ``coco_captions`` (COCO 2014, Karpathy splits train/val/test/restval) in
the pipeline's example format.

Its features: ``image`` (JPEG), ``image/id``, ``image/filename``, ``captions`` (``text``,
``id``) and COCO detection ``objects`` (not used: their labels are not our grounding ground
truth).
"""


def to_example(features: dict) -> dict:
    """-> ``image`` (as read, encoded when decoding is skipped), ``image_id`` int64,
    ``captions`` string ``[N]``."""
    return {
        "image": features["image"],
        "image_id": features["image/id"],
        "captions": features["captions"]["text"],
    }
