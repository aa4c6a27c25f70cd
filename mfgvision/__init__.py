"""mfgvision: manufacturing vision at the edge."""

from importlib.metadata import PackageNotFoundError, version

try:
    # set at install from the git tag (pyproject.toml [tool.setuptools_scm]); every module reports it
    # as software_version
    __version__ = version("mfgvision")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0.0.0"
