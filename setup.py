from glob import glob

from setuptools import find_packages, setup

package_name = "internvla_s2"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["internvla_s2_node", "internvla_s2_node.*"]),
    # Data files by glob only: include_package_data would make setuptools treat the asset folders
    # (sim/assets/episodes, ...) as packages and warn that they are missing from `packages`.
    package_data={"internvla_s2_node": ["sim/assets/**/*"]},
    include_package_data=False,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.json") + glob("config/*.xml")),
        ("share/" + package_name + "/config/sros2", glob("config/sros2/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="internvla_s2 developers",
    maintainer_email="internvla-s2@example.com",
    description="InternVLA-N1 System-2 vision-language navigation policy as a ROS 2 package",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "s2_node = internvla_s2_node.ros.s2_node:main",
            "action_executor = internvla_s2_node.ros.action_executor:main",
            "sim_bridge = internvla_s2_node.ros.sim_bridge:main",
            "internvla-s2-bringup = internvla_s2_node.ros.bringup:main",
            "internvla-s2-infer = internvla_s2_node.cli.infer:main",
            "internvla-s2-prepare-cache = internvla_s2_node.cli.prepare_cache:main",
            "internvla-s2-make-tiny = internvla_s2_node.core.tiny:main",
            "internvla-s2-eval = internvla_s2_node.evaluation.cli:main",
            "internvla-s2-train = internvla_s2_node.train.cli:main",
        ],
    },
)
