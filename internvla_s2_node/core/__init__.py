"""ROS-free core of the S2 policy. Nothing in here imports rclpy."""
