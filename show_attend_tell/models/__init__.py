"""Flax Linen modules of the captioner: encoders, attention, decoder step, captioner."""

# Importing a backbone module registers it in the encoder registry.
from show_attend_tell.models import efficientnet, resnet, vgg  # noqa: E402, F401
