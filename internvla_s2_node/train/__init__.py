"""Fine-tuning of the S2 model on LeRobot-format VLN trajectories (``internvla-s2-train``)."""
