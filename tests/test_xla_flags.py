import os
import subprocess
import sys
from pathlib import Path

from show_attend_tell.xla_flags import DEFAULT_FLAGS, add_default_flags


def test_defaults_are_appended_to_existing_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    value = add_default_flags(environ)
    assert value.split() == ["--xla_force_host_platform_device_count=4", *DEFAULT_FLAGS]
    assert add_default_flags(environ) == value  # idempotent


def test_a_flag_the_user_set_wins():
    name = DEFAULT_FLAGS[0].split("=")[0]
    environ = {"XLA_FLAGS": f"{name}="}
    assert add_default_flags(environ) == f"{name}="
    assert add_default_flags({}) == " ".join(DEFAULT_FLAGS)


def test_importing_the_package_sets_the_defaults_before_jax_starts():
    """In a fresh interpreter without XLA_FLAGS (not this session, which conftest set up):
    importing the package adds the defaults, and jax's backend, started afterwards, runs."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = ("import os, show_attend_tell; flags = os.environ['XLA_FLAGS']; "
            "import jax; jax.numpy.ones(2).block_until_ready(); print(flags)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.split() == list(DEFAULT_FLAGS)
