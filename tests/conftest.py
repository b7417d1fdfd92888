"""Test-wide environment: DDS stays on this machine, rendering is headless, no hub access."""

import os
import signal

from ros_domains import DEFAULT_BASE

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_DOMAIN_ID", str(DEFAULT_BASE))  # each test adds its offset (tests/ros_domains.py)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

# A suite started in the background of a shell without job control (`nohup bash scripts/test.sh &`)
# inherits SIGINT ignored, and every process the tests start would inherit that too: the Ctrl-C tests
# (tests/test_launch_cli.py, tests/test_eval_fail_fast.py) would then fail for the harness, not the code.
# A handler, unlike an ignored signal, is not inherited across exec, so the children get the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Load torch's compiler stack (which loads triton's shared library) before any test starts
# ROS 2 executors and DDS threads. Loading libtriton later in a process that has created and
# destroyed many rclpy nodes crashed in dlopen once in a combined run (tests/test_faults_*
# followed by tests/test_backbone.py); the nodes themselves load the model right after rclpy
# starts and are not affected.
import torch._dynamo  # noqa: E402,F401
