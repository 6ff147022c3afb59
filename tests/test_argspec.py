"""The command line's defaults equal the Python API's.

Every fit option shared by the CLI and `apfdsp.align.align` / `fit_alignment` is parsed from a minimal
command line and compared with the default in the function's signature, so changing a default in one
place and not the other fails here.
"""

import inspect

import pytest

from apfdsp.align import ALIGN_DEFAULTS, align, fit_alignment
from apfdsp.cli import build_parser
from apfdsp.demo import demo_dry

# CLI option dest -> (API parameter name, conversion from the CLI value to the API's unit)
SHARED = {
    "n_sections": ("n_sections", lambda v: v),
    "structure": ("structure", lambda v: v),
    "seed": ("seed", lambda v: v),
    "max_delay_ms": ("max_delay_s", lambda v: v / 1e3),
    "per_channel": ("per_channel", lambda v: v),
    "causal": ("causal", lambda v: v),
}

MINIMAL = {
    "align": ["align", "dry.wav", "wet.wav", "-o", "out.wav"],
    "fit": ["fit", "dry.wav", "wet.wav", "-o", "model.json"],
    "mix": ["mix", "dry.wav", "wet.wav", "--wet-ratio", "0.5", "-o", "mix.wav"],
}


def defaults(func):
    return {name: p.default for name, p in inspect.signature(func).parameters.items() if p.default is not p.empty}


@pytest.mark.parametrize("command", sorted(MINIMAL))
@pytest.mark.parametrize("func", [align, fit_alignment], ids=["align", "fit_alignment"])
@pytest.mark.parametrize("dest", sorted(SHARED))
def test_cli_default_equals_api_default(command, func, dest):
    args = build_parser().parse_args(MINIMAL[command])
    api_name, to_api = SHARED[dest]
    expected = defaults(func)[api_name]
    value = to_api(getattr(args, dest))
    if isinstance(expected, float):
        assert value == pytest.approx(expected, rel=1e-12)
    else:
        assert value == expected
    assert type(to_api(getattr(args, dest))) is type(defaults(func)[api_name])


@pytest.mark.parametrize("dest", sorted(SHARED))
def test_align_defaults_table_agrees(dest):
    api_name = SHARED[dest][0]
    if api_name in ALIGN_DEFAULTS:
        assert ALIGN_DEFAULTS[api_name] == defaults(align)[api_name] == defaults(fit_alignment)[api_name]


def test_every_api_option_is_covered():
    # The CLI exposes every user-facing knob of align except the ones meant for the Python API only.
    api_only = {"fs", "max_bins", "nperseg", "fit_options", "callback", "apply"}
    assert set(defaults(align)) | {"fs"} - api_only <= {api for api, _ in SHARED.values()} | api_only


def test_structure_choices_match_the_fit():
    from apfdsp.fit import STRUCTURES

    parser = build_parser()
    align_parser = parser._subparsers._group_actions[0].choices["align"]
    action = next(a for a in align_parser._actions if a.dest == "structure")
    assert tuple(action.choices) == tuple(STRUCTURES)


def test_demo_duration_default_equals_demo_dry():
    args = build_parser().parse_args(["demo"])
    assert args.duration == inspect.signature(demo_dry).parameters["duration_s"].default
