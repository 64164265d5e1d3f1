"""A test that needs an optional resource skips where it is absent, except where CI says the
resource must be there (WIRINGLAB_REQUIRE): then a failed install cannot pass as a skip."""

import pytest
from conftest import needs


@pytest.mark.parametrize("present, required, skips", [(True, "", False), (False, "", True),
                                                       (False, "numba,chromium", False), (False, "chromium2", True)])
def test_needs_skips_only_an_absent_resource_that_is_not_required(monkeypatch, present, required, skips):
    monkeypatch.setenv("WIRINGLAB_REQUIRE", required)
    assert needs("chromium", present, "why").args == (skips,)
