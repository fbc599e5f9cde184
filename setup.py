"""Maps the five code folders at the repository root onto the `gristmill.*` import namespace."""

from setuptools import find_packages, setup

CODE_FOLDERS = ("pipeline", "filters", "tokenizer", "trainer", "kernels")

packages: list[str] = []
package_dir: dict[str, str] = {}
for folder in CODE_FOLDERS:
    for package in (folder, *find_packages(include=[f"{folder}.*"])):
        name = f"gristmill.{package}"
        packages.append(name)
        package_dir[name] = package.replace(".", "/")

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={name: ["*.txt", "*.json", "*.toml", "*.ftz", "data/*"] for name in packages},
)
