import os

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


def test_the_test_session_runs_with_the_defaults():
    assert set(DEFAULT_FLAGS) <= set(os.environ["XLA_FLAGS"].split())
