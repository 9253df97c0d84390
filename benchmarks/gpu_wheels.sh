#!/usr/bin/env bash
# Downloads what benchmarks/gpu.py needs on the device machine and its image
# lacks (keras, keras-hub and their missing pure dependencies) into .whl/,
# for Python 3.12 on x86-64 Linux. Carry `.whl` and install there with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl keras==3.15.1 keras-hub==0.32.0 namex optree kagglehub kagglesdk
ls .whl
