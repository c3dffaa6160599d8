"""MS COCO (Karpathy splits) with the paper's settings (Xu et al. 2015; configs/common.py).

Run (after building the dataset, see README "Real datasets"):
  sat train --config configs/coco.py:soft --workdir runs/coco_soft
  sat train --config configs/coco.py:hard --workdir runs/coco_hard
  sat evaluate --workdir runs/coco_soft --split test --beam_size 3

Training stops early on validation BLEU-4 (patience 10 evaluations, kept across resumes);
`sat evaluate` and `sat caption` then use the best validated checkpoint by default, not the
latest (up to 10 evaluations later); `--checkpoint latest|STEP` chooses another.

Paper, Table 1 (COCO, test): soft BLEU-1/2/3/4 70.7/49.2/34.4/24.3, METEOR 23.90;
hard 71.8/50.4/35.7/25.0, METEOR 23.04 — with the paper's own BLEU script; expect a few
points of difference with pycocoevalcap and a different VGG checkpoint.
Settings: VGG-19 conv5_4 annotations 14×14×512 (frozen, ImageNet weights from
`config.model.encoder.weights`, see README "Pretrained encoders"), vocabulary 10000, batch 64
with length buckets, dropout 0.5, Adam, early stopping on validation BLEU-4. Fine-tune with
`--config.model.encoder.kwargs.trainable=true` (own rate `model.encoder.learning_rate`);
train on precomputed annotations with `--config.data.feature_cache=DIR`
(`sat data cache-features`). Variants: soft, hard, smoke, smoke_hard, scst (self-critical
training from a cross-entropy run, `--config.train.init_from=runs/coco_soft`, docs/scst.md),
smoke_scst.
`:hard` trains with the paper's REINFORCE reward (eq. 12: log p(y | s, a) summed over the
caption) and entropy weight λ_e = 0.01. `configs/shapes.py:hard` uses the Theano code's
per-token mean and λ_e = 0.001 instead, because the sum failed on shapes (docs/results.md);
that choice is not measured on COCO. To train with it:
`--config.train.reward=mean --config.train.entropy_weight=0.001`.
"""

import ml_collections

from configs import common

VARIANTS = ("soft", "hard", "smoke", "smoke_hard", "scst", "smoke_scst")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_variant(arg, __file__, VARIANTS)
    config = common.paper_config(variant.attention)
    config.data.name = "coco_captions"
    config.data.num_val_images = 5000  # the Karpathy val split's 5000 images
    if variant.scst:
        # Self-critical fine-tuning from a cross-entropy run (--config.train.init_from=WORKDIR);
        # docs/scst.md. Selected by validation CIDEr, the reward.
        common.use_scst(config)
        config.train.steps = 50_000
    if variant.smoke:
        common.shrink_for_smoke(config)
    return config
