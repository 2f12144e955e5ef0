"""Package discovery over the two source roots, and the run-time data a wheel must carry."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# Top-level folders the node reads at run time; a built package carries them inside
# `appliance/` (appliance.resources finds them there, or beside the package in a checkout).
DATA_DIRS = ("migrations", "wsdl")


class BuildWithData(build_py):
    """Copies migrations/ and wsdl/ into the built `appliance` package (wheels, sdists' builds)."""

    def run(self) -> None:
        super().run()
        for name in DATA_DIRS:
            for source in sorted((HERE / name).rglob("*")):
                if source.is_dir() or "__pycache__" in source.parts:
                    continue
                target = Path(self.build_lib) / "appliance" / source.relative_to(HERE)
                self.mkpath(str(target.parent))
                self.copy_file(str(source), str(target))


setup(
    packages=find_packages(include=["appliance", "appliance.*"]) + find_packages("clients"),
    package_dir={"appliance_client": "clients/appliance_client"},
    cmdclass={"build_py": BuildWithData},
)
