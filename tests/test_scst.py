"""Self-critical training: the gradient is REINFORCE's by exact enumeration, the sampler draws
from the scored policy, the baselines, hard-attention replay, and training runs (smoke
variants, bitwise resume, init_from)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.shapes import get_config
from show_attend_tell.checkpoints import CheckpointError, Checkpoints
from show_attend_tell.config_loading import config_from_args
from show_attend_tell.data.vocab import END, PAD, START
from show_attend_tell.models.captioner import Captioner, build_captioner
from show_attend_tell.models.encoders import example_input
from show_attend_tell.sampling import rescore, sample
from show_attend_tell.scst import DF_FILE, baselines, scst_loss
from show_attend_tell.train import train_and_evaluate

VOCAB = 6  # <pad> <start> <end> <unk> and two words: <unk>, 4, 5 and <end> can be emitted
EMITTABLE = (3, 4, 5, END)
T = 3


def tiny_model(attention="soft"):
    config = get_config("smoke").model
    config.attention = attention
    return build_captioner(config, VOCAB)


def tiny(attention="soft", seed=0):
    model = tiny_model(attention)
    images = jnp.asarray(np.random.default_rng(seed).integers(0, 256, (2, 64, 64, 3)), jnp.uint8)
    # jitted: op by op, the init compiles each of its operations on its own
    params = jax.jit(model.init)(jax.random.key(seed), example_input(model.encoder),
                                 jnp.zeros((1, 2), jnp.int32))["params"]
    output = params["step_module"]["output"]  # a less uniform policy
    output["kernel"] = output["kernel"] * 6.0
    output["bias"] = jnp.asarray(np.random.default_rng(seed).normal(size=VOCAB), jnp.float32)
    return model, params, images


def all_captions():
    """Every caption of at most T tokens: words then <end>, or T words (cut at max length)."""
    out = []
    for length in range(1, T + 1):
        for words in itertools.product(EMITTABLE[:-1], repeat=length - 1):
            out.append((*words, END))
    out += list(itertools.product(EMITTABLE[:-1], repeat=T))
    return out


def padded(captions):
    tokens = np.full((len(captions), T), PAD, np.int32)
    for row, caption in enumerate(captions):
        tokens[row, : len(caption)] = caption
    return jnp.asarray(tokens)


@jax.jit
def _stepwise_log_probs(params, image, tokens):
    model = tiny_model()
    variables = {"params": params}
    annotations = model.apply(variables, image[None], method=Captioner.encode)
    cache = model.apply(variables, annotations, method=Captioner.prepare)
    rows = tokens.shape[0]
    cache = cache._replace(carry=jax.tree.map(lambda x: jnp.repeat(x, rows, 0), cache.carry))
    carry, previous, total = cache.carry, jnp.full((rows,), START), jnp.zeros(rows)
    emittable = jnp.array(EMITTABLE)
    for t in range(T):
        carry, out = model.apply(variables, cache, carry, previous, method=Captioner.step)
        log_probs = jax.nn.log_softmax(out.logits[:, emittable])
        index = jnp.argmax(tokens[:, t, None] == emittable[None], axis=1)
        gained = jnp.take_along_axis(log_probs, index[:, None], axis=1)[:, 0]
        total = total + jnp.where(tokens[:, t] != PAD, gained, 0.0)
        previous = tokens[:, t]
    return total


def stepwise_log_prob(model, params, image, captions):
    """log π of each caption by calling Captioner.step token by token (all captions as rows
    of one image), π the softmax over the tokens that can be emitted: independent of the
    scanned decoder, its custom VJP and the loss."""
    del model
    return _stepwise_log_probs(params, image, padded(captions))


@jax.jit
def _prepared(params, image):
    model = tiny_model()
    annotations = model.apply({"params": params}, image[None], method=Captioner.encode)
    return model.apply({"params": params}, annotations, method=Captioner.prepare)


@jax.jit
def _step_logits(params, cache, carry, previous):
    carry, out = tiny_model().apply({"params": params}, cache, carry, previous,
                                    method=Captioner.step)
    return carry, out.logits


def stepwise_greedy(model, params, image):
    """The most probable emittable token at each step, one Captioner.step call per token
    (jitted: eager dispatch compiles every operation on its own)."""
    del model
    cache = _prepared(params, image)
    carry, previous, caption = cache.carry, START, ()
    while len(caption) < T and END not in caption:
        carry, logits = _step_logits(params, cache, carry, jnp.array([previous]))
        previous = EMITTABLE[int(np.argmax(logits[0, jnp.array(EMITTABLE)]))]
        caption += (previous,)
    return caption


def test_scst_gradient_equals_the_reinforce_gradient_by_exact_enumeration():
    model, params, images = tiny()
    image = images[0]
    captions = all_captions()
    rewards = jnp.asarray(np.random.default_rng(1).uniform(0, 3, len(captions)), jnp.float32)

    def expected_reward(params):
        log_probs = stepwise_log_prob(model, params, image, captions)
        return jnp.sum(jnp.exp(log_probs) * rewards), jnp.exp(log_probs)

    (_, probs), reinforce = jax.jit(jax.value_and_grad(expected_reward, has_aux=True))(params)
    assert abs(float(probs.sum()) - 1.0) < 1e-5  # the enumeration covers every caption
    tokens = padded(captions)
    baseline = 0.7  # any constant: Σ_y π(y) ∇ log π(y) = 0

    def surrogate(params, sign):
        outputs = rescore(model, params, image[None], tokens, jax.random.key(0))
        # The N rows weighted by π(y)·N: their mean is the expectation over captions.
        advantages = sign * len(captions) * jax.lax.stop_gradient(probs) * (rewards - baseline)
        locations = jnp.zeros_like(tokens)
        return scst_loss(outputs, tokens, locations, advantages, 0.0).loss

    surrogate_grad = jax.jit(jax.grad(surrogate))  # one compilation for both signs
    scst = surrogate_grad(params, 1.0)
    flat_scst, flat_reinforce = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
                                 for g in (scst, reinforce))
    assert np.abs(flat_reinforce).max() > 1e-3
    np.testing.assert_allclose(flat_scst, -flat_reinforce, rtol=2e-3, atol=2e-6)
    flipped = surrogate_grad(params, -1.0)
    flat_flipped = np.concatenate([np.ravel(x) for x in jax.tree.leaves(flipped)])
    assert not np.allclose(flat_flipped, -flat_reinforce, rtol=2e-3, atol=2e-6)


def test_sampler_draws_from_the_rescored_policy():
    model, params, images = tiny()
    captions = all_captions()
    # 3000 captions per image in 10 draws of 300 (independent keys): sample's compile time
    # grows steeply with num_samples (300: ~2x that of 5; 3000: ~25x), its run time does not.
    draws, per_draw = 10, 300
    num = draws * per_draw
    drawn = [sample(model, {"params": params}, images, jax.random.fold_in(jax.random.key(3), i),
                    num_samples=per_draw, max_length=T) for i in range(draws)]
    tokens = np.concatenate([np.asarray(d.tokens) for d in drawn], axis=1)
    all_lengths = np.concatenate([np.asarray(d.lengths) for d in drawn], axis=1)
    assert tokens.shape == (2, num, T)
    for b in range(2):
        probs = np.exp(np.asarray(stepwise_log_prob(model, params, images[b], captions)))
        rows = tokens[b]
        keys = {c: i for i, c in enumerate(captions)}
        counts = np.zeros(len(captions))
        for row in rows:
            words = tuple(int(t) for t in row if t != PAD)
            counts[keys[words]] += 1
        sigma = np.sqrt(probs * (1 - probs) / num)
        assert np.all(np.abs(counts / num - probs) < 5 * sigma + 1e-3), (counts / num, probs)
        lengths = all_lengths[b]
        expected = [c.index(END) if END in c else T for c in (tuple(r) for r in rows.tolist())]
        np.testing.assert_array_equal(lengths, expected)
        # the greedy caption takes the most probable token at each step
        greedy = tuple(int(t) for t in np.asarray(drawn[0].greedy_tokens[b]) if t != PAD)
        assert greedy == stepwise_greedy(model, params, images[b])
        assert all(np.array_equal(d.greedy_tokens[b], drawn[0].greedy_tokens[b]) for d in drawn)


def test_rescored_log_probs_equal_stepwise_ones():
    model, params, images = tiny()
    captions = all_captions()[:6]
    tokens = padded(captions * 2)  # K = 6 rows per image, image 0's first
    outputs = rescore(model, params, images, tokens, jax.random.key(0))
    terms = scst_loss(outputs, tokens, jnp.zeros_like(tokens), jnp.zeros(len(tokens)), 0.0)
    stepwise = np.mean([stepwise_log_prob(model, params, images[b], captions) for b in (0, 1)])
    np.testing.assert_allclose(float(terms.log_prob), stepwise, rtol=1e-5)


def test_baselines_by_hand():
    rewards = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    greedy = np.array([0.5, 4.0])
    np.testing.assert_array_equal(baselines(rewards, greedy, "greedy"),
                                  [[0.5, 0.5, 0.5], [4.0, 4.0, 4.0]])
    np.testing.assert_allclose(baselines(rewards, greedy, "mean_of_others"),
                               [[2.5, 2.0, 1.5], [3.0, 3.0, 0.0]])
    with pytest.raises(ValueError, match="needs config.train.scst.samples >= 2"):
        baselines(rewards[:, :1], greedy, "mean_of_others")
    with pytest.raises(ValueError, match=r"config.train.scst.baseline='best'; expected one of"):
        baselines(rewards, greedy, "best")


def test_hard_attention_rescoring_replays_the_sampled_locations():
    model, params, images = tiny("hard")
    key = jax.random.key(5)
    drawn = sample(model, {"params": params}, images, key, num_samples=4, max_length=T)
    tokens, locations = drawn.tokens.reshape(8, T), drawn.locations.reshape(8, T)
    outputs = rescore(model, params, images, tokens, key)
    mask = np.asarray(tokens != PAD)
    assert mask.sum() > 8
    np.testing.assert_array_equal(np.asarray(outputs.steps.location)[mask], np.asarray(locations)[mask])
    terms = scst_loss(outputs, tokens, locations, jnp.ones(8), 0.0)
    assert float(terms.location_mismatch) == 0.0
    # control: another key draws other locations, and those rows are left out
    other = rescore(model, params, images, tokens, jax.random.key(6))
    assert float(scst_loss(other, tokens, locations, jnp.ones(8), 0.0).location_mismatch) > 0


# ------------------------------------------------------------------ training runs


def scst_overrides(data_dir, *extra):
    return [f"data.data_dir={data_dir}", "data.name=shapes", "data.builder_config=tiny",
            "data.val_split=validation", *extra]


@pytest.mark.slow
# coco.py:smoke_scst is flickr8k.py:smoke_scst with Adam for RMSProp (and its dataset, which
# the tests replace); Adam trains in test_configs.py's coco.py:smoke, so it is not run here.
@pytest.mark.parametrize("spec", ["configs/flickr8k.py:smoke_scst",
                                  "configs/shapes.py:smoke_scst+hard"])
def test_scst_smoke_variants_train_two_steps(spec, tiny_shapes, tmp_path):
    spec, _, hard = spec.partition("+")
    extra = ["model.attention=hard"] if hard else []
    config = config_from_args(spec, scst_overrides(tiny_shapes, "train.eval_every=0", *extra))
    assert config.train.objective == "scst"
    state = train_and_evaluate(config, tmp_path)
    assert int(state.step) == 2
    assert (tmp_path / "checkpoints" / "2").is_dir() and (tmp_path / DF_FILE).is_file()
    text = (tmp_path / "metrics.jsonl").read_text()
    for name in ("reward", "baseline", "advantage_std", "sample_entropy", "greedy_cider"):
        assert f'"train/{name}"' in text
    if hard:  # every re-scored row replayed its sampled locations
        assert '"train/location_mismatch": 0.0' in text


@pytest.mark.slow
def test_scst_from_a_cross_entropy_run_resumes_bitwise(tiny_shapes, tmp_path):
    source = tmp_path / "xe"
    train_and_evaluate(config_from_args("configs/shapes.py:smoke", scst_overrides(
        tiny_shapes, "train.steps=1", "train.eval_every=0")), source)
    xe_params = Checkpoints(source, read_only=True).manager.restore(1)["state"]["params"]

    def run(workdir, steps, *extra):
        return train_and_evaluate(config_from_args("configs/shapes.py:smoke_scst", scst_overrides(
            tiny_shapes, f"train.init_from={source}:1", f"train.steps={steps}",
            "train.eval_every=0", "train.scst.baseline=mean_of_others", *extra)), workdir)

    # One step of a warm-up from rate 0 (the schedule's value at step 0) changes nothing: the
    # run starts exactly from the source's parameters, with a fresh optimizer.
    still = run(tmp_path / "still", 1, "train.schedule=constant", "train.warmup_steps=1")
    for a, b in zip(jax.tree.leaves(xe_params), jax.tree.leaves(still.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(still.step) == 1

    straight = run(tmp_path / "straight", 3)
    run(tmp_path / "resumed", 2)
    resumed = run(tmp_path / "resumed", 3)
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    changed = any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                  zip(jax.tree.leaves(xe_params), jax.tree.leaves(straight.params), strict=True))
    assert changed

    with pytest.raises(CheckpointError, match="config.train.init_from"):
        run(tmp_path / "bad", 1, f"train.init_from={tmp_path / 'nowhere'}")


def test_unknown_objective_is_a_one_line_error(tmp_path):
    config = get_config("smoke_scst")
    config.train.objective = "rl"
    with pytest.raises(ValueError, match=r"config.train.objective='rl'; expected one of \['xe', 'scst'\]"):
        train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize("spec", ["configs/shapes.py:scst", "configs/shapes.py:scst_hard",
                                  "configs/coco.py:scst", "configs/flickr8k.py:scst"])
def test_scst_variants_select_self_critical_training(spec):
    config = config_from_args(spec, [])
    assert config.train.objective == "scst" and config.train.eval_metric == "CIDEr"
    assert config.train.scst.samples == 5 and config.train.scst.baseline == "greedy"
    assert config.model.attention == ("hard" if spec.endswith("hard") else "soft")


@pytest.mark.parametrize("baseline", ["greedy", "mean_of_others"])
def test_scst_step_on_four_devices_equals_one_device(baseline):
    from show_attend_tell.cider import DocumentFrequency
    from show_attend_tell.parallel import make_mesh
    from show_attend_tell.scst import ScstStep
    from show_attend_tell.state import make_optimizer, sharded_state

    config = get_config("smoke_scst")
    config.train.scst.baseline = baseline
    config.eval.max_length = 6
    # SGD: an update linear in the gradient (Adam's m/√v turns rounding in near-zero gradients
    # into full-size steps)
    config.train.optimizer, config.train.learning_rate = "sgd", 0.1
    rng = np.random.default_rng(0)
    references = rng.integers(4, VOCAB, (8, 3, 5)).astype(np.int32)
    lengths = rng.integers(1, 6, (8, 3)).astype(np.int32)
    batch = {"image": rng.integers(0, 256, (8, 64, 64, 3)).astype(np.uint8),
             "references": references, "reference_lengths": lengths}
    df = DocumentFrequency.from_references(
        [[list(r[:n]) for r, n in zip(refs, ns, strict=True)]
         for refs, ns in zip(references, lengths, strict=True)], VOCAB)
    model = build_captioner(config.model, VOCAB)
    tx = make_optimizer(config.train)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = make_mesh(devices)
        state, shardings = sharded_state(model, tx, config.seed, mesh)
        step = ScstStep(model, tx, config, mesh, shardings, df)
        for _ in range(2):
            state, metrics = step(state, batch)
        results.append((jax.device_get(state.params), jax.device_get(metrics)))
    (one, one_metrics), (four, four_metrics) = results
    assert one_metrics["advantage_std"] > 0
    for name in ("loss", "reward", "baseline", "greedy_cider", "sample_entropy"):
        np.testing.assert_allclose(four_metrics[name], one_metrics[name], rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
