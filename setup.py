"""Package discovery over the two source roots; everything else is in setup.cfg."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["appliance", "appliance.*"]) + find_packages("clients"),
    package_dir={"appliance_client": "clients/appliance_client"},
)
