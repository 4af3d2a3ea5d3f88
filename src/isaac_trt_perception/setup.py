from setuptools import find_packages, setup

package_name = 'isaac_trt_perception'

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
    description='The isaac_trt_perception detection node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'isaac_trt_perception_node = isaac_trt_perception.node:main',
            'perception-nodes = isaac_trt_perception.nodes_main:main',
        ],
    },
)
