#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite; with ../shared/ros2-launch-kit beside the
# checkout also the ROS 2 launch tests (scripts/ros2_overlay.sh), which skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
source scripts/ros2_overlay.sh
exec .venv/bin/python -m pytest tests "$@"
