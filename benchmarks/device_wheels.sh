#!/usr/bin/env bash
# Run HERE (not on the device machine): download the wheels of dimalib's dependencies that the
# H200 image lacks (it has torch, einops, numpy, pytest, hypothesis, tensorboard, tqdm), for its
# Python 3.12, into .whl/ (git-ignored through .git/info/exclude; about 40 MB of the 64 MiB a call
# may carry; mujoco-studio, which `import mujoco` does not need, is left out). Then call the
# device tool with
#   carry: [".whl"]   command: bash benchmarks/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for req in vector-quantize-pytorch einx loguru torch-einops-utils frozendict gymnasium \
           farama-notifications cloudpickle pettingzoo mujoco==4.0.0 mujoco-core==4.0.0 pyopengl \
           gymnasium-robotics glfw absl-py \
           etils; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp "${plat[@]}" -d .whl "$req"
done
du -sh .whl
ls .whl
