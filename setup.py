"""Package discovery that pyproject.toml cannot express: the `adapters/` folder installs as `tokbench_adapters`."""

from setuptools import find_packages, setup

adapter_pkgs = ["tokbench_adapters"] + [f"tokbench_adapters.{p}" for p in find_packages("adapters")]
setup(
    packages=find_packages(include=["tokbench", "tokbench.*"]) + adapter_pkgs,
    package_dir={"tokbench_adapters": "adapters"},
)
