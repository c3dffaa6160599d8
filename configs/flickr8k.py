"""Flickr8k (Karpathy splits) with the paper's settings (Xu et al. 2015; configs/common.py).

Run (after `sat data build karpathy/flickr8k --manual_dir DIR`, see README):
  sat train --config configs/flickr8k.py:soft --workdir runs/f8k_soft
  sat evaluate --workdir runs/f8k_soft --split test --beam_size 3   # the best validated step

Early stopping as in configs/coco.py (validation BLEU-4, patience 10): evaluation and captioning
use the best validated checkpoint by default (`--checkpoint latest|STEP` for another).

Paper, Table 1 (Flickr8k, test): soft BLEU-1/2/3/4 67/44.8/29.9/19.5, METEOR 18.93;
hard 67/45.7/31.4/21.3, METEOR 20.30 (paper's BLEU script; pycocoevalcap differs a little).
Settings: VGG-19 conv5_4 14×14×512 frozen, vocabulary 10000, batch 64, length buckets,
dropout 0.5, RMSProp (the paper's choice for Flickr8k), early stopping on validation BLEU-4.
Variants: soft, hard, smoke, smoke_hard, scst (self-critical training from a cross-entropy run,
`--config.train.init_from=runs/f8k_soft`, docs/scst.md), smoke_scst. `:hard` uses the paper's
summed reward, as in configs/coco.py (whose docstring says how to switch to the Theano code's
per-token mean).
"""

import ml_collections

from configs import common

VARIANTS = ("soft", "hard", "smoke", "smoke_hard", "scst", "smoke_scst")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_variant(arg, __file__, VARIANTS)
    config = common.paper_config(variant.attention)
    config.data.name = "karpathy"
    config.data.builder_config = "flickr8k"
    config.train.optimizer = "rmsprop"  # the paper's choice for Flickr8k (§4.3)
    config.train.learning_rate = 1e-4
    config.train.steps = 40_000
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    if variant.scst:
        # Self-critical fine-tuning from a cross-entropy run (docs/scst.md).
        common.use_scst(config)
        config.train.steps = 20_000
    if variant.smoke:
        common.shrink_for_smoke(config)
    return config
