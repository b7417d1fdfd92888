"""The evaluation's S2 policy publishes each new observation once, even when Python reuses an id().

The look-down frame of a trained model's first look-down was once never published: the session
compared observations by ``id()``, the level frame before it had just been freed, and the tilted
observation got its id, so the node was asked about a frame it had already answered and the episode
hung for the whole S2 timeout. No ROS here: the bridge is a stand-in that counts publishes.
"""

import gc
import weakref

import numpy as np

from internvla_s2_node.evaluation.s2_session import S2RosPolicy
from internvla_s2_node.sim.backend import SimConfig, make_observation


class CountingBridge:
    def __init__(self):
        self.published = []

    def publish_observation(self, obs):
        self.published.append(obs.camera_pitch_deg)
        return len(self.published)


def _obs(pitch: float):
    return make_observation(SimConfig(), np.zeros(3), 0.0, pitch, 0, rgb=np.zeros((2, 2, 3), np.uint8))


def test_each_new_observation_is_published_once_and_no_freed_id_can_alias_it():
    bridge = CountingBridge()
    policy = S2RosPolicy(bridge, timeout_s=1.0)
    level = _obs(0.0)
    assert policy._publish(level) == 1 and policy._publish(level) == 1  # the same observation: once
    alive = weakref.ref(level)
    del level
    gc.collect()
    assert alive() is not None  # kept while it is the last one published: no new observation can take its id()
    tilted = [_obs(30.0) for _ in range(50)]
    assert [policy._publish(o) for o in tilted] == list(range(2, 52)) and bridge.published[1:] == [30.0] * 50
    assert alive() is None  # and released once another frame is published
