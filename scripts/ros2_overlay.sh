# Source me from the repository root, after scripts/env.sh (bash; works under `set -euo pipefail`).
#
# With the ROS 2 launch kit beside the checkout (../shared/ros2-launch-kit, or $ROS2_LAUNCH_KIT):
# install it into $VENV (default .venv; idempotent, ~1 s once installed), `colcon build` ros2_ws
# and source its overlay, so that `ros2 launch internvla_s2 ...` and the launch tests run
# (tests/test_launch_pytest.py, tests/test_launch_cli.py; tests/test_colcon_install.py builds
# plain and --symlink-install itself). Without the kit it says so, and those tests skip.
_kit=${ROS2_LAUNCH_KIT:-../shared/ros2-launch-kit}
_venv=${VENV:-.venv}
if [ -f "$_kit/install.sh" ]; then
    bash "$_kit/install.sh" "$_venv" | grep '^\[ros2-launch-kit\]'
    source "$_kit/env.sh" "$_venv"
    mkdir -p ros2_ws/log
    if ! (cd ros2_ws && colcon build --event-handlers console_direct- >log/colcon_build.txt 2>&1); then
        tail -n 40 ros2_ws/log/colcon_build.txt >&2
        echo "[ros2] colcon build of ros2_ws failed (ros2_ws/log/colcon_build.txt)" >&2
        return 1 2>/dev/null || exit 1
    fi
    set +u
    source ros2_ws/install/setup.bash
    set -u
    # The overlay puts its copy of the package first on PYTHONPATH; the tests are of this checkout
    # (the installed copy's own imports: tests/test_colcon_install.py).
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    echo "[ros2] launch kit $_kit in $_venv; ros2_ws built and sourced: the launch tests run"
else
    echo "[ros2] no ROS 2 launch kit at $_kit: the launch and colcon tests skip"
fi
unset _kit _venv
