"""Show, Attend and Tell in JAX/Flax."""
