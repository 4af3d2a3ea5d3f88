from setuptools import find_packages, setup

package_name = 'perception_engine_builder'

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
    description='perception-build-engine, perception-verify-engine: TensorRT engines verified by COCO mAP.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'perception-build-engine = perception_engine_builder.cli:build_main',
            'perception-verify-engine = perception_engine_builder.cli:verify_main',
        ],
    },
)
