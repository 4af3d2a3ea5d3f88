import os
from glob import glob

from setuptools import find_packages, setup

package_name = 'perception'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        # launch/, config/ and models/ live in this package (the workspace's top-level launch/,
        # config/ and models/ are symbolic links here), so nothing is installed from outside it.
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
        # The shipped model bundle, so the default model.path package://perception/models/detector/...
        # resolves on a robot without the source tree.
        ('share/' + package_name + '/models/detector',
         [f for f in glob('models/detector/*') if os.path.isfile(f)]),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='Perception workspace maintainers',
    maintainer_email='maintainers@isaac-trt-perception.dev',
    description='Bringup: deployment YAML to node parameters, launch wiring, bag replay tools.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'perception-params = perception.params:main',
            'perception-bag = perception.bag.cli:main',
            'perception-demo = perception.demo:main',
        ],
    },
)
