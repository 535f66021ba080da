import pytest

from robench.errors import ConfigError, UnknownNameError
from robench.registry import Registry


def test_duplicate_and_unknown_names():
    reg = Registry("widget", "robench.defenses", "robench.test-widgets", "how to register")

    @reg.register("alpha-one")
    class A:
        pass

    with pytest.raises(ConfigError, match="already registered"):

        @reg.register("alpha-one")
        class B:
            pass

    with pytest.raises(UnknownNameError, match="did you mean 'alpha-one'"):
        reg.get("alpha-onee")
    assert reg.get("alpha-one") is A and A.registry_name == "alpha-one"
