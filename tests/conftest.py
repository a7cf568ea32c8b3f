"""Test-suite configuration: the ``slow`` marker for InstEval-sized work.

``pytest -m "not slow"`` skips every test parametrised by a fixture case of more than
``SLOW_ROWS`` observations (see ``cases.SLOW_CASES``) and the tests marked ``slow`` by hand
(notebook execution, the bootstrap); CI runs everything.
"""

from __future__ import annotations

import pytest
from cases import SLOW_CASES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and SLOW_CASES.intersection(
                v for v in callspec.params.values() if isinstance(v, str)):
            item.add_marker(pytest.mark.slow)
