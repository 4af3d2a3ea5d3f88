from setuptools import find_packages, setup

package_name = 'perception_trainer'

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
    description='Synthetic data, training, evaluation and export of the model bundle.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'perception-synth = perception_trainer.generate:main',
            'perception-train = perception_trainer.train:main',
            'perception-eval = perception_trainer.evaluate:main',
            'perception-export = perception_trainer.export:main',
            'perception-train-default = perception_trainer.recipe:main',
            'perception-gap = perception_trainer.gap:main',
        ],
    },
)
