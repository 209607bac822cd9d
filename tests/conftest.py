"""Test-wide settings.

The test models are tiny: one intra-op thread runs them as fast as two and avoids
oversubscription when pytest-xdist runs one worker per core (``nox -s tests`` uses ``-n 2``).
"""

from __future__ import annotations

import os

import torch

torch.set_num_threads(int(os.environ.get("DIMALIB_TEST_THREADS", "1")))
