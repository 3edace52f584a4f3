#!/usr/bin/env bash
# The oldest declared dependencies together: a fresh venv with every direct requirement of setup.cfg at its
# lower bound (uv's --resolution lowest-direct), then a fast subset of the suite (config, geometry and codec,
# pipeline, evaluation, training steps, export). Usage: bash tests/floors.sh [VENV_DIR]  (default .venv-floors)
# Needs the package index. docs/testing.md has the last result.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-floors}"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip "uv>=0.9"
# torch and ai-edge-litert are exact pins (no floor to test) and their tests skip without them
"$venv/bin/python" -m uv pip install --python "$venv/bin/python" --quiet --resolution lowest-direct \
    -e ".[cpu]" "pytest>=8" "Pillow>=10"
echo "installed at the floors:"
"$venv/bin/python" -m uv pip list --python "$venv/bin/python" 2>/dev/null \
    | grep -iE '^(keras|tensorflow(-cpu)?|tensorboard|numpy|scipy|opencv-python-headless|pycocotools|pyyaml|tqdm|absl-py|google-crc32c|pytest|pillow) '
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_config.py tests/test_geometry_codec.py \
    tests/test_pipeline.py tests/test_evaluation.py tests/test_training.py tests/test_export.py "${@:2}"
