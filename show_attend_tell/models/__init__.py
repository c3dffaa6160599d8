"""Flax Linen modules of the captioner: encoders, attention, decoder step, captioner."""
