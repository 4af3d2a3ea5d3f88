from setuptools import find_packages, setup

package_name = 'perception_bench'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='Perception workspace maintainers',
    maintainer_email='maintainers@isaac-trt-perception.dev',
    description='Every benchmark of the workspace and the timing helpers they share.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'perception-benchmark = perception_bench.benchmark_cli:main',
            'perception-node-bench = perception_bench.node_run:main',
            'perception-cameras-bench = perception_bench.cameras:main',
            'perception-train-bench = perception_bench.train_step:main',
            'perception-family-bench = perception_bench.family:main',
        ],
    },
)
