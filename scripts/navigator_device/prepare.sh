#!/usr/bin/env bash
# Here (CPU, ~2 min): everything one device call of the navigator run needs, in .gpu_nav/ (git-ignored):
# the training houses (tgz), MuJoCo + PyOpenGL for Python 3.12 (one tar.xz: the wheels themselves would
# take the working tree over the device's 64 MiB), and the GL loader packages (.gl/). Then, on the device:
#   run(command="bash scripts/navigator_device/call.sh", carry=[".gl", ".gpu_nav"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../.."
HOUSES=${HOUSES:-800}
grep -qx '/.gpu_\*/' .git/info/exclude || echo '/.gpu_*/' >> .git/info/exclude
grep -qx '/.gl/' .git/info/exclude || echo '/.gl/' >> .git/info/exclude
mkdir -p .gpu_nav .gl
if [ ! -s .gpu_nav/houses.tgz ]; then
    python scripts/train_navigator.py houses --work runs/nav_device --houses "$HOUSES"
    tar -C runs/nav_device -czf .gpu_nav/houses.tgz houses
fi
if [ ! -s .gpu_nav/site.tar.xz ]; then
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$tmp/whl" mujoco-core==4.0.0 pyopengl==3.1.10
    mkdir -p "$tmp/site" && for w in "$tmp"/whl/*.whl; do (cd "$tmp/site" && unzip -q -o "$w"); done
    tar -C "$tmp/site" -cJf .gpu_nav/site.tar.xz . && rm -rf "$tmp"
fi
(cd .gl && ls ./*.deb >/dev/null 2>&1 || apt-get download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .gpu_nav .gl
