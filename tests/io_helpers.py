"""What the tests of the file modules share (`test_audiofile`, `test_streaming`, `test_model_format`)."""

import os

from apfdsp.cascade import Allpass1, Allpass2, AllpassCascade, Delay, Polarity

FS = 48000


def example_cascade():
    """Second- and first-order sections, an integer and a fractional delay, a polarity flip (delays by 6)."""
    return AllpassCascade(
        [Allpass2(0.9, 1000.0, 0.3), Allpass1(-0.5), Delay(5), Delay(2.3), Polarity(-1)], fs=FS
    )


def noise(rng, channels, n, scale=0.15):
    x = scale * rng.standard_normal((channels, n))
    return x[0] if channels == 1 else x


def listing(directory):
    return sorted(os.listdir(directory))
