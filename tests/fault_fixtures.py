"""The fault suites' cluster (loaded by conftest's ``pytest_plugins``): one control plane
per test module, with an audit log (the suites count who wrote what) and our CRDs; an
admin client and a fresh namespace per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import OPERATOR_NAMESPACE, started
from paths import ROOT
from testbed import kubeutil
from testbed.controlplane import ControlPlane


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with started(ControlPlane(tmp_path_factory.mktemp("faults-cp"), audit=True)) as plane:
        api = plane.api_client()
        kubeutil.apply_crds(api, ROOT / "crds")
        kubeutil.create_namespace(api, OPERATOR_NAMESPACE, exist_ok=True)
        api.close()
        yield plane


@pytest.fixture
def admin(cp: ControlPlane) -> Iterator[Any]:
    """An admin client of ``cp``."""
    api = cp.api_client()
    yield api
    api.close()


@pytest.fixture
def ns(admin: Any) -> Iterator[str]:
    """A fresh namespace in ``cp``, deleted afterwards."""
    name = f"f-{secrets.token_hex(3)}"
    kubeutil.create_namespace(admin, name)
    yield name
    kubeutil.delete_namespace(admin, name)
