"""Property-based fuzz of the command line: mutated model files through apply and plot, random option sets.

The acceptance-size run (1,000 of each) is benchmarks/fuzz_cli.py; here a few dozen examples run
in-process (``apfdsp.cli.main``) on short material.
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fuzz_cases import make_inputs, model_case, option_case

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    audio, model = make_inputs(str(directory))
    return str(directory), audio, model


@FUZZ
@given(rnd=st.randoms(use_true_random=False))
def test_mutated_models_through_apply(material, rnd):
    code, problems, err = model_case(*material, rnd, "apply")
    assert problems == [], err


@settings(FUZZ, max_examples=15)
@given(rnd=st.randoms(use_true_random=False))
def test_mutated_models_through_plot(material, rnd):
    code, problems, err = model_case(*material, rnd, "plot")
    assert problems == [], err


@settings(FUZZ, max_examples=25)
@given(rnd=st.randoms(use_true_random=False))
def test_random_option_sets(material, rnd):
    code, problems, err = option_case(*material, rnd)
    assert problems == [], err


def test_resealed_mutations_reach_the_filter(material):
    """The mutations are not all refused at the door: resealed ones pass the loader and filter audio."""
    codes = [model_case(*material, random.Random(seed), "apply")[0] for seed in range(40)]
    assert codes.count(0) >= 3 and codes.count(2) >= 3
