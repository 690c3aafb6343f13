"""Import the feature modules that are installed; a missing one is skipped, a broken one fails."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from types import ModuleType


def optional_modules(names: Iterable[str]) -> Iterator[ModuleType]:
    for name in names:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as e:
            # only "this module (or its package) is absent" is skippable
            if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
                raise
