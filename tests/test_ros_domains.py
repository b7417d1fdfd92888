"""Test domain ids come from one base plus a listed offset (tests/ros_domains.py); none is hard-coded."""

import pathlib
import re

import pytest

import ros_domains

HARD_CODED = re.compile(r"domain_id\s*=\s*\d|ROS_DOMAIN_ID\s*=\s*str\(\d|\bDOMAIN_ID\s*=\s*\d|ROS_DOMAIN_ID=\d")


def test_offsets_are_distinct_and_small():
    offsets = list(ros_domains.OFFSETS.values())
    assert len(set(offsets)) == len(offsets)
    assert all(0 <= o <= ros_domains.MAX_OFFSET for o in offsets)


def test_domain_is_base_plus_offset(monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", "52")
    assert ros_domains.domain("default") == 52
    assert ros_domains.domain("faults_step") == 52 + ros_domains.OFFSETS["faults_step"]
    monkeypatch.delenv("ROS_DOMAIN_ID")
    assert ros_domains.domain("ros_node") == ros_domains.DEFAULT_BASE + ros_domains.OFFSETS["ros_node"]


@pytest.mark.parametrize("value", ["91", "-1", "abc"])
def test_a_base_without_room_for_the_offsets_is_refused(monkeypatch, value):
    monkeypatch.setenv("ROS_DOMAIN_ID", value)
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID"):
        ros_domains.domain("ros_node")


def test_no_test_hard_codes_a_domain_id():
    here = pathlib.Path(__file__).parent
    offenders = [f"{f.name}:{n}" for f in sorted(here.glob("*.py")) if f.name not in (pathlib.Path(__file__).name, "ros_domains.py")
                 for n, line in enumerate(f.read_text().splitlines(), 1) if HARD_CODED.search(line)]
    assert offenders == []
