"""Thin ROS 2 adapters around the ROS-free core (see docs/ARCHITECTURE.md).

Pure helpers (``conversions``, ``qos``, ``params``, ``pipeline``, ``outputs``,
``controller``) hold the logic; the node modules only wire them to rclpy.
"""
