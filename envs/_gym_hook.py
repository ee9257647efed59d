"""Register the ``fixpoint/…`` gymnasium ids without importing gymnasium (stdlib only).

gymnasium 1.x has no plugin entry points and ``gymnasium.register_envs`` is a no-op marker, so the
ids must be registered when ``fixpoint_rl.envs`` is imported — but the specification modules must
not pull gymnasium in (the tabular layer imports ``fixpoint_rl.envs.checks``). :func:`install`:

* gymnasium already imported → import ``fixpoint_rl.envs.registration`` now;
* otherwise → put a one-shot finder on ``sys.meta_path`` that, when gymnasium is first imported,
  lets it finish executing and then imports the registration module.

A failure while registering is turned into a warning: it must never break ``import gymnasium``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

_REGISTRATION = "fixpoint_rl.envs.registration"


def _register() -> None:
    try:
        importlib.import_module(_REGISTRATION)
    except Exception as error:  # noqa: BLE001 - reported, never raised into gymnasium's import
        warnings.warn(f"fixpoint_rl: registering the gymnasium ids failed: {error!r}", stacklevel=2)


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name):  # e.g. get_resource_reader, is_package
        return getattr(self._loader, name)


class _GymnasiumHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "gymnasium":
            return None
        _uninstall()
        spec = importlib.util.find_spec("gymnasium")
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


def _uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _GymnasiumHook)]


def install() -> None:
    """Register now if gymnasium is imported, else once it is (idempotent)."""
    if "gymnasium" in sys.modules:
        _register()
    elif not any(isinstance(f, _GymnasiumHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _GymnasiumHook())
