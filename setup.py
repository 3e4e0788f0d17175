"""Maps the top-level source folders under the single import root ``llamastack``.

pyproject.toml holds all metadata; this file only computes the package list, which
setuptools cannot express declaratively for a renamed root.
"""

from setuptools import find_packages, setup

SOURCE_ROOTS = ("stack", "providers", "distributions", "cli")

packages: list[str] = []
package_dir: dict[str, str] = {}
for root in SOURCE_ROOTS:
    package_dir[f"llamastack.{root}"] = root
    packages.append(f"llamastack.{root}")
    packages += [f"llamastack.{root}.{sub}" for sub in find_packages(where=root)]

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"llamastack.distributions": ["*/*.yaml"]},
)
