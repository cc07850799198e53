"""DeepSynthBody: deep generative models of synthetic medical data, served over HTTP."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deepsynthbody")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
