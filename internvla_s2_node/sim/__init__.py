"""ROS-free simulation layer: one backend interface (MuJoCo, habitat-sim), VLN-CE episodes,
an occupancy-grid navigator, metrics as the VLN-CE Habitat evaluator computes them,
reference policies, one episode loop and plots.

Nothing here imports rclpy; heavy modules (mujoco, habitat_sim, matplotlib) are imported
only by the modules that need them, so ``import internvla_s2_node.sim.metrics`` stays light.
"""
