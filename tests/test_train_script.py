"""scripts/train_system2_qwen3vl.sh says what is missing before torchrun starts, and trains with plain
DDP when DeepSpeed is absent and no ZeRO config was asked for (issue 16 item 4). torchrun itself is
replaced by a recorder: PYTHON is a wrapper that runs `-c` checks with this Python and prints the
torchrun command line instead of running it."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_system2_qwen3vl.sh"


@pytest.fixture
def fake_python(tmp_path):
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/usr/bin/env bash\nif [ "$1" = -c ]; then exec {sys.executable} "$@"; fi\necho "TORCHRUN $*"\n')
    wrapper.chmod(0o755)
    return wrapper


def run(fake_python, **env):
    return subprocess.run(["bash", str(SCRIPT), "--max-steps", "1"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHON=str(fake_python), NPROC_PER_NODE="1", **env))


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="DeepSpeed is installed here")
def test_without_deepspeed_plain_ddp_unless_zero_was_asked_for(fake_python):
    done = run(fake_python)
    assert done.returncode == 0, done.stderr
    assert "plain DDP (DeepSpeed is not installed: pip install -r requirements-gpu.txt" in done.stdout
    torchrun = [line for line in done.stdout.splitlines() if line.startswith("TORCHRUN ")]
    assert len(torchrun) == 1 and "--deepspeed" not in torchrun[0] and "--max-steps 1" in torchrun[0]

    asked = run(fake_python, DS_CONFIG="scripts/ds_zero3.json")
    assert asked.returncode == 1 and "TORCHRUN" not in asked.stdout
    assert asked.stderr.strip() == ("train_system2_qwen3vl.sh: DS_CONFIG=scripts/ds_zero3.json needs DeepSpeed, which is "
                                    "not installed; pip install -r requirements-gpu.txt, or unset DS_CONFIG for plain DDP")


def test_requirements_gpu_file_exists_and_is_pointed_to():
    gpu = (ROOT / "requirements-gpu.txt").read_text()
    assert any(line.startswith("deepspeed==") for line in gpu.splitlines())
    assert "flash-attn" in gpu
    assert "requirements-gpu.txt" in (ROOT / "requirements.txt").read_text()


def test_train_cli_refuses_deepspeed_when_absent(tmp_path, capsys, monkeypatch):
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("DeepSpeed is installed here")
    from internvla_s2_node.core.tiny import default_tiny_checkpoint
    from internvla_s2_node.train.cli import main

    ds = tmp_path / "ds.json"
    ds.write_text("{}")
    assert main(["--data", str(tmp_path), "--output-dir", str(tmp_path / "o"), "--deepspeed", str(ds),
                 "--model", str(default_tiny_checkpoint("qwen3_vl"))]) == 1
    assert capsys.readouterr().err.strip().startswith("internvla-s2-train: --deepspeed needs DeepSpeed, which is not installed")
