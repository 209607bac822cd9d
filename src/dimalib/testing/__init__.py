"""Test doubles for what cannot run here (Isaac Gym), mirroring the real APIs exactly.

* :mod:`dimalib.testing.fake_bidexhands` — ``FakeMultiVecTaskPython``, a FAKE of Bi-DexHands'
  ``MultiVecTaskPython`` (same interface and data handling, made-up dynamics) so that the
  Bi-DexHands adapter is tested without Isaac Gym. Never use it for results.
* :mod:`dimalib.testing.reference_unet` — ``reference_unet_forward``, the denoiser's U-Net
  computed the plain way (``F.conv1d``, one linear layer per norm): the reference of the
  U-Net's equivalence tests and of ``benchmarks/bench_unet.py``.
"""
