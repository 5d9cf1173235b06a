#!/usr/bin/env bash
# Build reluflow's portable distribution here and test it as a user would get it:
#   1. the sdist, then the wheel built *from that sdist* (`python -m build` does both: a file missing
#      from the sdist fails the build), with the portable settings of a published wheel:
#      RELUFLOW_NATIVE=OFF (SIMD path chosen at import) and RELUFLOW_CUDA=OFF (CPU only);
#   2. a fresh virtual environment with that wheel and its test extra installed;
#   3. the whole test suite run against the installed wheel, from a copy of the source tree without
#      python/, so that no source copy of the package can be imported instead.
# Usage: tools/build_wheel.sh [output dir, default dist/]; PYTHON=python3.12 picks the interpreter;
# JOBS=n the compile jobs. The distributions are left in the output dir; the work dir is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/reluflow-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export RELUFLOW_NATIVE=OFF RELUFLOW_CUDA=OFF CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-$(nproc)}

echo "== build: sdist, then the wheel from the sdist (RELUFLOW_NATIVE=OFF RELUFLOW_CUDA=OFF)"
"$PY" -m venv "$WORK/build-env"
"$WORK/build-env/bin/pip" install -q build
rm -f "$OUT"/reluflow-*.whl "$OUT"/reluflow-*.tar.gz
"$WORK/build-env/bin/python" -m build --outdir "$OUT" "$ROOT"
WHEEL=$(ls "$OUT"/reluflow-*.whl)
SDIST=$(ls "$OUT"/reluflow-*.tar.gz)
echo "built: $SDIST $WHEEL"

echo "== install the wheel into a fresh venv"
"$PY" -m venv "$WORK/test-env"
"$WORK/test-env/bin/pip" install -q "${WHEEL}[test]"

echo "== test the installed wheel"
# the source tree as git knows it (tests read README.md, examples/, pyproject.toml, tools/), minus python/
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | grep -zv '^python/' | xargs -0 cp --parents -t "$WORK/src"
cd "$WORK/src"
"$WORK/test-env/bin/python" - <<'PYEOF'
import os, sys
import reluflow, reluflow._core as core
site = os.path.realpath(sys.prefix)
assert os.path.realpath(reluflow.__file__).startswith(site), f"not the installed wheel: {reluflow.__file__}"
print(f"reluflow from {os.path.dirname(reluflow.__file__)}")
print(f"SIMD path {core.simd_path()}; compiled {core.simd_paths_compiled()}; this CPU runs {core.simd_paths_supported()}")
PYEOF
"$WORK/test-env/bin/python" -m pytest -q -p no:cacheprovider tests
echo "== ok: $WHEEL passes the suite in a fresh venv"
