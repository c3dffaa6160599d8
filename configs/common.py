"""The paper's settings and what every dataset's config shares (Xu et al. 2015).

``paper_config`` holds every key with the paper's value, or, where the paper gives none, the
value the COCO and Flickr8k configs use (its comment says so). ``configs/coco.py`` and
``configs/flickr8k.py`` add their data; ``configs/shapes.py`` changes what a toy dataset
trained in minutes on two CPU cores needs, each change with its reason.

Variants, parsed by :func:`parse_variant`: ``soft`` (the default), ``hard``, ``scst``
(self-critical training, beyond the paper, docs/scst.md) and ``scst_hard``; a ``smoke_``
prefix (``smoke`` alone meaning ``smoke_soft``) shrinks the run to seconds for tests.
"""

from pathlib import Path
from typing import NamedTuple

import ml_collections

from show_attend_tell.config_loading import ConfigError


class Variant(NamedTuple):
    """What a ``configs/<name>.py:<variant>`` argument asks for."""

    name: str
    attention: str  # soft | hard
    scst: bool  # self-critical training (docs/scst.md)
    smoke: bool  # tiny model and run, for tests


def parse_variant(arg: str | None, config_file: str, allowed: tuple[str, ...]) -> Variant:
    """``arg`` (``None`` or empty: ``soft``) checked against the variants ``config_file``
    (the caller's ``__file__``) accepts; an unknown one is a :class:`ConfigError` naming the
    file and the allowed variants."""
    name = arg or "soft"
    if name not in allowed:
        file = Path(config_file)
        raise ConfigError(f"{file.parent.name}/{file.name}: unknown variant {name!r}; "
                          f"expected {', '.join(allowed)}")
    return Variant(name=name, attention="hard" if name.endswith("hard") else "soft",
                   scst="scst" in name, smoke=name.startswith("smoke"))


def paper_config(attention: str) -> ml_collections.ConfigDict:
    """Every key, with the paper's value; ``attention`` is ``soft`` (§4.2) or ``hard`` (§4.1).
    Sections: §3.1 model, §4.1/4.2 attention, §4.3 training procedure, §5.1 data."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # parameters, data order and sampling all derive from it

    config.data = ml_collections.ConfigDict()
    config.data.name = ""  # the TFDS dataset; each dataset's config sets it
    config.data.builder_config = ""  # its TFDS builder config ("": the default)
    config.data.data_dir = "data/tfds"  # where TFDS datasets are built / read
    config.data.train_split = "train"  # Karpathy splits (§5.1)
    config.data.val_split = "val"  # early stopping and model selection (§4.3)
    config.data.test_split = "test"
    config.data.max_caption_length = 30  # words, before <start>/<end>; longer ones are cut
    # Padded word lengths: minibatches of captions of one length (§4.3); these boundaries pad
    # a batch to the next one up, not to exactly one length.
    config.data.bucket_boundaries = (10, 12, 14, 16, 20, 30)
    config.data.shuffle_buffer = 10_000  # training images shuffled together
    # C: a batch holds train.batch_size / C images, each with C of its captions, so the encoder
    # and W_a a run once per image (docs/training.md); 1 = one (image, caption) pair per row as
    # in the paper. Not in the paper: it changes speed, not the objective.
    config.data.captions_per_image = 5
    config.data.vocab_min_count = 5  # words seen fewer times are <unk> (not in the paper)
    config.data.vocab_max_size = 10_000  # the fixed vocabulary of 10,000 words (§5.1)
    config.data.num_val_images = 0  # images per periodic validation; 0 = whole split
    config.data.feature_cache = ""  # folder of `sat data cache-features`; "" = encode images

    config.model = ml_collections.ConfigDict()
    # Annotations a_i: VGG-19 conv5_4 before max pooling, 14x14x512, pretrained on ImageNet
    # and not fine-tuned (§3.1.1, §4.3).
    config.model.encoder = ml_collections.ConfigDict({
        "name": "vgg19",  # or resnet50/101/152, efficientnet_lite0
        "weights": "",  # .npz from `sat weights import`; "" = random (tests only)
        "learning_rate": 1e-4,  # peak rate of a fine-tuned encoder (not in the paper)
        "kwargs": ml_collections.ConfigDict({"trainable": False}),  # frozen, as in the paper
    })
    config.model.embed_dim = 512  # m, the word embedding E (eq. 1-3, 7); the paper gives none
    config.model.hidden_dim = 1800  # n, the LSTM (eq. 1-3): the Theano code's COCO setting
    config.model.attention_dim = 512  # the hidden layer of f_att (eq. 4); the paper gives none
    config.model.dropout = 0.5  # with early stopping, the regulariser (§4.3); rate not given
    config.model.attention = attention  # soft (§4.2) | hard (§4.1)
    config.model.gate = "scalar"  # β_t = σ(f_β(h_{t-1})) (§4.2.1) | vector | none
    config.model.attention_activation = "tanh"  # in the f_att MLP (eq. 4) | relu
    config.model.deep_output = True  # eq. 7: L_o(E y_{t-1} + L_h h_t + L_z z_t)
    config.model.deep_output_tanh = False  # the tanh the Theano code adds before L_o
    config.model.init_activation = "tanh"  # h_0, c_0 = tanh(f_init(mean a_i)) (§3.1.2) | none
    config.model.p_expected = 0.5  # hard: probability of the expected context (§4.1)
    config.model.expected_switch = "image"  # that choice per image (§4.1) | batch (Theano)
    config.model.dtype = "float32"  # compute dtype; params stay float32 (not in the paper)
    # Teacher forcing's backward pass: fused (custom VJP, deferred weight gradients; faster,
    # docs/performance.md) or reference (plain nn.scan); equal results (not in the paper).
    config.model.scan_impl = "fused"

    config.train = ml_collections.ConfigDict()
    # Global minibatch of caption rows (§4.3; the paper gives no size): 16 images x 5 captions,
    # which splits over 1, 2, 4, 8 or 16 devices.
    config.train.batch_size = 80
    config.train.steps = 150_000  # upper bound; early stopping ends a run first (§4.3)
    config.train.optimizer = "adam"  # Adam for COCO/Flickr30k, RMSProp for Flickr8k (§4.3)
    config.train.learning_rate = 1e-3  # Adam's usual rate; the paper gives none
    config.train.schedule = "constant"  # constant | cosine (not in the paper)
    config.train.warmup_steps = 0  # linear warm-up steps (not in the paper)
    config.train.grad_clip_norm = 5.0  # global-norm clipping (not in the paper)
    config.train.doubly_stochastic_weight = 1.0  # λ of eq. 14 (§4.2.1)
    config.train.reinforce_weight = 1.0  # λ_r of eq. 12 (§4.1)
    config.train.entropy_weight = 0.01  # λ_e of eq. 12 (§4.1)
    config.train.baseline_decay = 0.9  # b_k = 0.9 b_{k-1} + 0.1 log p(y | s_k, a) (§4.1)
    config.train.reward = "sum"  # eq. 12: log p(y | s, a), summed over the caption | mean
    config.train.log_every = 50  # steps between logged training metrics
    config.train.checkpoint_every = 5000  # steps between checkpoints
    config.train.keep_checkpoints = 2  # latest checkpoints kept, besides the best validated
    config.train.eval_every = 5000  # steps between validations; 0 = never
    config.train.eval_metric = "BLEU-4"  # early stopping on BLEU (§4.3), and the best step
    config.train.patience = 10  # validations without improvement before stopping; 0 = never
    config.train.objective = "xe"  # xe (eq. 14, eq. 12 for hard) | scst (docs/scst.md)
    config.train.init_from = ""  # WORKDIR[:best|latest|STEP]: start from that run's params
    config.train.scst = ml_collections.ConfigDict()  # self-critical training (beyond the paper)
    config.train.scst.samples = 5  # K captions sampled per image
    config.train.scst.baseline = "greedy"  # greedy (Rennie 2017) | mean_of_others (Luo 2020)

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 64  # images decoded together
    config.eval.beam_size = 3  # beam search width (the paper gives none)
    config.eval.max_length = 30  # words generated at most
    config.eval.length_normalization = 0.0  # alpha in ((5 + |y|) / 6) ** alpha; 0 = none
    config.eval.hard_sample = False  # hard: sample s_t when testing, not Σ α_i a_i (not said)
    return config


def use_scst(config: ml_collections.ConfigDict) -> None:
    """Self-critical training settings shared by every dataset (Rennie et al. 2017 fine-tune
    at a small constant rate from a cross-entropy model) and selected by CIDEr."""
    config.train.objective = "scst"
    config.train.learning_rate = 5e-5
    config.train.schedule = "constant"
    config.train.warmup_steps = 0
    config.train.eval_metric = "CIDEr"


def shrink_for_smoke(config: ml_collections.ConfigDict, encoder_kwargs: dict | None = None) -> None:
    """Tiny encoder, decoder, batch and run length: every code path in seconds (tests, fake
    data). ``encoder_kwargs`` replace the encoder's (``None``: the paper's encoder, frozen,
    on 48-pixel images); every word of the tiny data enters the vocabulary."""
    # 48 pixels, not 32: VGG-19's conv5 block then sees 3x3 maps (L = 9). On 2x2 maps XLA:CPU
    # swaps the 3x3 convolutions' operands and emits them as plain loops, 13x slower than the
    # whole 48-pixel forward pass at the tests' LLVM level 0 (2.96 against 0.23 s a call on
    # 8 images).
    config.model.encoder.kwargs = ml_collections.ConfigDict(
        encoder_kwargs or {"image_size": 48, "trainable": False})
    config.data.vocab_min_count = 1
    config.model.embed_dim = 16
    config.model.hidden_dim = 16
    config.model.attention_dim = 16
    config.train.batch_size = 8
    # Image groups stay on (2 captions x 4 images, one image per test device) where the config
    # has them.
    config.data.captions_per_image = min(config.data.captions_per_image, 2)
    config.train.steps = 2
    config.train.warmup_steps = 1
    config.train.log_every = 1
    config.train.checkpoint_every = 1
    config.train.eval_every = 2
    config.train.patience = 0
    config.eval.batch_size = 8
    config.eval.beam_size = 2
    config.eval.max_length = 8
