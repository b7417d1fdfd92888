"""internvla_s2: the InternVLA-N1 System-2 navigation policy as a ROS 2 package.

`internvla_s2_node.core` holds the ROS-free policy (backbone loading, history,
prompt, output parsing, geometry, engine); `internvla_s2_node.ros` holds thin
ROS 2 adapters; `internvla_s2_node.sim` the simulators and metrics;
`internvla_s2_node.train` the fine-tuning code.
"""

__version__ = "0.1.0"
