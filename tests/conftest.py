"""Shared pytest set-up: the importable contract suites get pytest's assertion messages."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("langchain_pad.profiles.testing")
