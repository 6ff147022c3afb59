"""Version of apfdsp (read by setup.cfg) and a helper that reports the environment.

The module's place in the package (a leaf utility) is docs/architecture.md, section 2.27.
"""

__version__ = "0.1.0"


def show_versions():
    """Return the versions of apfdsp and its runtime dependencies.

    Returns
    -------
    versions : dict
        Package name -> version string (``"not installed"`` when missing).

    Examples
    --------
    >>> from apfdsp import __version__
    >>> versions = show_versions()
    >>> versions["apfdsp"] == __version__, sorted(versions)
    (True, ['apfdsp', 'autograd', 'matplotlib', 'numpy', 'python', 'scipy', 'soundfile'])
    """
    import importlib.metadata as metadata
    import platform

    versions = {"apfdsp": __version__, "python": platform.python_version()}
    for name in ("numpy", "scipy", "autograd", "soundfile", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
