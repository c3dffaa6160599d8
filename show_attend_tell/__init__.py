"""Show, Attend and Tell in JAX/Flax."""

from show_attend_tell.xla_flags import add_default_flags

add_default_flags()
