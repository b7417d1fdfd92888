"""Simulated evaluation, above ``sim/`` and ``ros/``: it composes a simulator, episodes and policies.

``runner`` (shards of episodes x policies -> results), ``cli`` (``internvla-s2-eval``) and
``s2_session`` (the S2 node as a policy, over ROS 2 through ``ros.sim_bridge``; imported only
when the S2 policy is evaluated, so oracle/random evaluations need no ROS).
"""
