"""Self-critical sequence training (Rennie et al. 2017): REINFORCE on whole sampled captions
with CIDEr-D as the reward. Beyond the paper, which trains by cross-entropy only.

Shape letters: B global batch of images, K samples per image, N = B·K, T steps.

One step is three programs with the reward computed on the host between them:

  1. ``sample`` (jit, batch-sharded): K captions per image at temperature 1 and the greedy
     caption (:mod:`show_attend_tell.sampling`);
  2. reward (NumPy, :mod:`show_attend_tell.cider`): CIDEr-D of every sample and of the greedy
     caption against the image's references, document frequencies from the training split;
     the baseline b (``train.scst.baseline``): the greedy caption's CIDEr-D (Rennie et al.
     2017) or the mean of the image's other K − 1 samples (Luo 2020);
  3. ``update`` (jit, batch-sharded, state donated): the gradient of
     ``−1/N Σ_n (r_n − b_n) · log π(y_n)`` with log π re-scored teacher-forced, then the
     optimizer step. For hard attention log π(y_n) includes the sampled locations'
     ``Σ_t log α_{t,s_t}`` (the sequence advantage multiplies them too), and λ_e's attention
     entropy bonus of eq. 12 stays.

The reward is host NumPy rather than a ``pure_callback`` inside one program: the batch is
sharded over devices and processes, each process scores its own rows with its own references
(which never go to the devices), and the three phases can be timed apart. Rewards, baselines
and advantages go back to the devices as batch-sharded arrays, so logged means are global.
"""

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec

from show_attend_tell import parallel, paths
from show_attend_tell.cider import DocumentFrequency, cider_d
from show_attend_tell.data.references import references_of, split_references
from show_attend_tell.errors import InvalidInput
from show_attend_tell.sampling import policy_log_probs, rescore, sample, teacher_forcing_inputs

BASELINES = ("greedy", "mean_of_others")
DF_FILE = "cider_document_frequency.npz"


def baselines(rewards: np.ndarray, greedy_rewards: np.ndarray, kind: str) -> np.ndarray:
    """Each sample's baseline: rewards ``[B, K]``, greedy rewards ``[B]`` -> ``[B, K]``.

    ``greedy``: the image's greedy caption's reward; ``mean_of_others``: the mean reward of the
    image's other K − 1 samples (independent of the sample itself, so the estimate stays
    unbiased).
    """
    if kind == "greedy":
        return np.broadcast_to(greedy_rewards[:, None], rewards.shape).copy()
    if kind == "mean_of_others":
        k = rewards.shape[1]
        if k < 2:
            raise InvalidInput("config.train.scst.baseline='mean_of_others' needs "
                             "config.train.scst.samples >= 2")
        return (rewards.sum(axis=1, keepdims=True) - rewards) / (k - 1)
    raise InvalidInput(f"config.train.scst.baseline={kind!r}; expected one of {list(BASELINES)}")


class ScstTerms(NamedTuple):
    loss: jnp.ndarray
    log_prob: jnp.ndarray  # mean Σ_t log π(y_t) of a sample
    sample_entropy: jnp.ndarray  # mean H[π(·|y_<t)] per emitted token
    sample_length: jnp.ndarray  # mean emitted tokens, <end> included
    location_mismatch: jnp.ndarray  # hard: fraction of rows whose replayed locations differ


def scst_loss(outputs, tokens, locations, advantages, entropy_weight: float) -> ScstTerms:
    """``−1/N Σ_n A_n · (Σ_t log π(y_nt) + Σ_t log α_{t,s_t})`` (the location term for hard
    attention only) ``− λ_e · mean H[α]`` (hard).

    outputs: :func:`rescore`'s; tokens, locations ``[N, T]``; advantages ``[N]`` (constants).
    A hard-attention row whose re-scored locations differ from the sampled ones is left out:
    its log-probability would be that of a path never sampled.
    """
    steps = outputs.steps
    _, mask = teacher_forcing_inputs(tokens)
    log_probs = policy_log_probs(steps.logits)  # [N, T, V]
    token_log_prob = jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]
    # after <end> the target is <pad>, impossible under π (log π = −inf): masked by selection
    log_prob = jnp.sum(jnp.where(mask > 0, token_log_prob, 0.0), axis=1)
    probs = jnp.exp(log_probs)
    entropy = -jnp.sum(jnp.where(probs > 0, probs * log_probs, 0.0), axis=-1)
    hard = ~outputs.used_expected  # rows that sampled locations
    matches = jnp.all((steps.location == locations) | (mask == 0), axis=1) | ~hard
    valid = matches.astype(jnp.float32)
    location_log_prob = jnp.where(hard, jnp.sum(steps.location_log_prob * mask, axis=1), 0.0)
    attention_entropy = jnp.where(hard, jnp.sum(steps.entropy * mask, axis=1), 0.0)
    advantages = jax.lax.stop_gradient(advantages)
    loss = -jnp.mean(valid * (advantages * (log_prob + location_log_prob)
                              + entropy_weight * attention_entropy))
    return ScstTerms(
        loss=loss,
        log_prob=jnp.mean(log_prob),
        sample_entropy=jnp.sum(entropy * mask) / jnp.maximum(mask.sum(), 1.0),
        sample_length=jnp.mean(mask.sum(axis=1)),
        location_mismatch=jnp.mean(1.0 - valid),
    )


def step_key(state):
    """The step's PRNG key, as cross-entropy training derives it."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def update(model, tx, train_config, state, images, tokens, locations, rewards, baseline,
           greedy_rewards):
    """The SCST gradient step on K samples per image (tokens/locations ``[B, K, T]``, rewards
    and baselines ``[B, K]``, greedy rewards ``[B]``) -> (new state, metrics)."""
    batch, k, length = tokens.shape
    tokens, locations = tokens.reshape(-1, length), locations.reshape(-1, length)
    advantages = (rewards - baseline).reshape(-1)
    key = step_key(state)

    def objective(params):
        outputs = rescore(model, params, images, tokens, key)
        terms = scst_loss(outputs, tokens, locations, advantages, train_config.entropy_weight)
        return terms.loss, terms

    (_, terms), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state)
    metrics = terms._asdict()
    metrics.update(reward=rewards.mean(), baseline=baseline.mean(),
                   advantage_std=jnp.std(rewards - baseline), greedy_cider=greedy_rewards.mean(),
                   grad_norm=optax.global_norm(grads))
    return new_state, metrics


def document_frequency(workdir: paths.PathLike, config, vocab) -> DocumentFrequency:
    """The training split's CIDEr-D document frequencies, computed once per run and kept in
    ``<workdir>/cider_document_frequency.npz`` (a resumed run and every process read the same
    numbers; every process computes them identically when the file is absent)."""
    path = paths.as_path(workdir) / DF_FILE
    if path.exists():
        df = DocumentFrequency.load(path)
        if df.vocab_size != len(vocab):
            raise InvalidInput(f"{path}: made for a vocabulary of {df.vocab_size} words, this run "
                             f"has {len(vocab)}; delete it to recompute")
        return df
    references = split_references(config.data, config.data.train_split, vocab)
    df = DocumentFrequency.from_references(references, len(vocab))
    if jax.process_index() == 0:
        df.save(path)
    return df


def _host_rows(array, mesh) -> np.ndarray:
    """This process's rows of a batch-sharded global array."""
    if array.is_fully_addressable:
        return np.asarray(jax.device_get(array))
    local = multihost_utils.global_array_to_host_local_array(array, mesh,
                                                             PartitionSpec(parallel.DATA_AXIS))
    return np.asarray(local)


class ScstStep:
    """``step(state, local_batch) -> (state, metrics)`` for batches of
    :class:`show_attend_tell.data.references.ImageBatches`."""

    def __init__(self, model, tx, config, mesh, state_shardings, df: DocumentFrequency):
        scst = config.train.scst
        if scst.baseline not in BASELINES:
            raise InvalidInput(
                f"config.train.scst.baseline={scst.baseline!r}; expected one of {list(BASELINES)}")
        if scst.samples < 1 or (scst.baseline == "mean_of_others" and scst.samples < 2):
            raise InvalidInput(f"config.train.scst.samples={scst.samples}: expected >= 1 (>= 2 "
                             "with baseline='mean_of_others')")
        self.mesh, self.df, self.kind = mesh, df, scst.baseline
        self.k, self.max_length = scst.samples, config.eval.max_length
        self.widths = sorted({b + 1 for b in config.data.bucket_boundaries
                              if b + 1 < self.max_length} | {self.max_length})
        batch, replicated = parallel.batch_sharding(mesh), parallel.replicated(mesh)
        self._sample = jax.jit(
            lambda state, images: sample(model, {"params": state.params}, images,
                                         step_key(state), num_samples=self.k,
                                         max_length=self.max_length),
            in_shardings=(state_shardings, batch), out_shardings=batch)
        self._update = jax.jit(
            lambda state, *arrays: update(model, tx, config.train, state, *arrays),
            in_shardings=(state_shardings,) + (batch,) * 6,
            out_shardings=(state_shardings, replicated), donate_argnums=0)

    def rewards(self, samples, local_batch: dict):
        """Host CIDEr-D of this process's samples ``[B, K]`` and greedy captions ``[B]``."""
        refs = references_of(local_batch)
        tokens, lengths = _host_rows(samples.tokens, self.mesh), _host_rows(samples.lengths, self.mesh)
        batch, k, length = tokens.shape
        per_sample = [refs[b] for b in range(batch) for _ in range(k)]
        rewards = cider_d(tokens.reshape(-1, length), per_sample, self.df,
                          lengths.reshape(-1)).reshape(batch, k)
        greedy = cider_d(_host_rows(samples.greedy_tokens, self.mesh), refs, self.df,
                         _host_rows(samples.greedy_lengths, self.mesh))
        return rewards, greedy

    def __call__(self, state, local_batch: dict):
        start = time.perf_counter()
        images = parallel.global_batch(self.mesh, {"image": local_batch["image"]})["image"]
        samples = self._sample(state, images)
        jax.block_until_ready(samples)
        sampled = time.perf_counter()
        rewards, greedy = self.rewards(samples, local_batch)
        baseline = baselines(rewards, greedy, self.kind)
        scored = time.perf_counter()
        arrays = parallel.global_batch(self.mesh, {
            "rewards": rewards.astype(np.float32), "baseline": baseline.astype(np.float32),
            "greedy": greedy.astype(np.float32)})
        # The gradient pass runs only as many steps as the longest sample needs, rounded up to
        # a few fixed widths (one compilation each); the steps cut are <pad> everywhere.
        longest = int(jnp.max(samples.lengths)) + 1  # <end> included
        width = min(w for w in self.widths if w >= min(longest, self.max_length))
        state, metrics = self._update(state, images, samples.tokens[:, :, :width],
                                      samples.locations[:, :, :width], arrays["rewards"],
                                      arrays["baseline"], arrays["greedy"])
        jax.block_until_ready(metrics)
        done = time.perf_counter()
        metrics.update(seconds_sampling=sampled - start, seconds_reward=scored - sampled,
                       seconds_gradient=done - scored)
        return state, metrics
