"""The examples in the theory docstrings (`>>>`) run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import giftlab.theory

MODULES = ["giftlab.theory"] + [
    f"giftlab.theory.{m.name}" for m in pkgutil.iter_modules(giftlab.theory.__path__)
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_the_package_docstring_holds_examples():
    """Guard against a runner that finds nothing: the package docstring has the README's."""
    assert doctest.testmod(giftlab.theory).attempted >= 10
