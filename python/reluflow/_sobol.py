"""Scrambled Sobol points (placeholder until the own generator lands)."""
import numpy as np


def sobol_uniforms(n: int, d: int, seed: int) -> np.ndarray:
    raise NotImplementedError("QuasiMonteCarlo is being implemented")
