"""Guest ELF paths for the tests, from the environment ctest sets (or the
default build tree)."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _guest(variable, default):
    return os.environ.get(variable, str(ROOT / "build" / default))


@pytest.fixture(scope="session")
def test_guest():
    return _guest("THAW_TEST_GUEST", "tests/test_guest.elf")


@pytest.fixture(scope="session")
def snapshot_guest():
    return _guest("THAW_SNAPSHOT_GUEST", "tests/snapshot_guest.elf")


@pytest.fixture(scope="session")
def echo_guest():
    return _guest("THAW_ECHO_GUEST", "examples/echo.elf")
