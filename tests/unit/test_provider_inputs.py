"""Secret -> provider inputs (``callstorage.providers.inputs``), the one step the
controller's Secret cache and the media path share."""

from __future__ import annotations

import pytest

from callstorage.providers.base import ProviderError, Reason
from callstorage.providers.inputs import SecretRead, provider_inputs, secret_reads
from callstorage.storagespec import ExternalStorageSpec, parse_external_storage


def _spec(**extra: object) -> ExternalStorageSpec:
    return parse_external_storage({"spec": {
        "storageType": "s3", "bucket": "rec",
        "s3": {"region": "us-east-1", "credentialsSecretRef": {"name": "creds"}}, **extra}})


def test_credentials_then_the_ca_bundle_key() -> None:
    spec = _spec(tls={"caSecretRef": {"name": "ca", "key": "ca.crt"}})
    reads = secret_reads(spec)
    assert reads == [SecretRead("creds", "spec.s3.credentialsSecretRef"),
                     SecretRead("ca", "spec.tls.caSecretRef", "ca.crt")]
    inputs = provider_inputs(spec, "app-1", {
        reads[0]: {"accessKeyId": b"AKIA"}, reads[1]: {"ca.crt": b"PEM"}})
    assert (inputs.secret, inputs.ca_bundle, inputs.namespace) == \
        ({"accessKeyId": b"AKIA"}, b"PEM", "app-1")
    assert reads[0].not_found("app-1") == \
        "Secret app-1/creds (spec.s3.credentialsSecretRef) not found"


def test_a_ca_secret_without_its_key_is_secret_key_missing() -> None:
    spec = _spec(tls={"caSecretRef": {"name": "ca", "key": "ca.crt"}})
    reads = secret_reads(spec)
    with pytest.raises(ProviderError) as caught:
        provider_inputs(spec, "app-1", {reads[0]: {}, reads[1]: {"other": b"x"}})
    assert caught.value.reason == Reason.SECRET_KEY_MISSING
    assert caught.value.message == \
        "Secret app-1/ca has no key 'ca.crt' (spec.tls.caSecretRef.key)"


def test_ambient_credentials_read_no_secret() -> None:
    spec = parse_external_storage({"spec": {"storageType": "s3", "bucket": "rec",
                                            "s3": {"region": "us-east-1"}}})
    assert secret_reads(spec) == []
    assert provider_inputs(spec, "app-1", {}).secret is None
