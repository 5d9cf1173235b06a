import numpy as np
import pytest

import reluflow as rf

DTYPES = [np.float32, np.float64]
# relative tolerances of a float32 / float64 computation against a float64 reference
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def available_backends():
    return [name for name, info in rf.backends().items() if info.available and name in ("numpy", "cpu")]
