"""MS COCO (Karpathy splits) with the paper's settings (Xu et al. 2015, §5, Table 1).

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

from configs import shapes

VARIANTS = ("soft", "hard", "smoke", "smoke_hard", "scst", "smoke_scst")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "soft"
    if variant not in VARIANTS:
        raise ValueError(
            f"configs/coco.py: unknown variant {variant!r}; expected {', '.join(VARIANTS)}"
        )
    config = shapes.get_config("hard" if variant.endswith("hard") else "soft")
    config.data.name = "coco_captions"
    config.data.builder_config = ""
    config.data.val_split = "val"
    config.data.max_caption_length = 30
    config.data.bucket_boundaries = (10, 12, 14, 16, 20, 30)
    config.data.vocab_min_count = 5
    config.data.vocab_max_size = 10_000
    config.data.num_val_images = 5000
    config.data.feature_cache = ""  # folder of `sat data cache-features`; "" = encode images

    config.model.encoder = ml_collections.ConfigDict({
        "name": "vgg19",  # or resnet50/101/152, efficientnet_lite0
        "weights": "",  # .npz from `sat weights import`; "" = random (tests only)
        "learning_rate": 1e-4,  # peak rate of a fine-tuned encoder
        "kwargs": ml_collections.ConfigDict({"trainable": False}),  # frozen, as in the paper
    })
    config.model.embed_dim = 512
    config.model.hidden_dim = 1800  # the Theano code's COCO setting
    config.model.attention_dim = 512
    config.model.dropout = 0.5

    config.train.batch_size = 64
    config.train.steps = 150_000
    config.train.doubly_stochastic_weight = 1.0  # the paper's λ
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.schedule = "constant"
    config.train.warmup_steps = 0
    config.train.eval_every = 5000
    config.train.checkpoint_every = 5000
    config.train.eval_metric = "BLEU-4"
    config.train.patience = 10

    config.eval.batch_size = 64
    config.eval.beam_size = 3
    config.eval.max_length = 30

    if variant.endswith("hard"):
        # The paper's reward, not the shapes:hard override it inherited (see the docstring).
        config.train.reward = "sum"
        config.train.entropy_weight = 0.01

    if "scst" in variant:
        # Self-critical fine-tuning from a cross-entropy run (--config.train.init_from=WORKDIR);
        # docs/scst.md. Selected by validation CIDEr, the reward.
        shapes.use_scst(config)
        config.train.steps = 50_000

    if variant.startswith("smoke"):
        _shrink(config)
    return config


def _shrink(config: ml_collections.ConfigDict) -> None:
    """Two steps on tiny fake data: small images, tiny decoder, same code paths."""
    config.model.encoder.kwargs = ml_collections.ConfigDict({"image_size": 32, "trainable": False})
    config.data.vocab_min_count = 1
    shapes.shrink_for_smoke(config)
