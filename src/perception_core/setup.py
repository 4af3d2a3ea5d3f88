from setuptools import find_packages, setup

package_name = 'perception_core'

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
    entry_points={'console_scripts': ['perception-bundle = perception_core.bundle_cli:main']},
    maintainer='Perception workspace maintainers',
    maintainer_email='maintainers@isaac-trt-perception.dev',
    description='The ROS-free core: model bundle, preprocessing, decoding, backends, parameters.',
    license='Apache-2.0',
)
