"""The fair-share rule of the validation workers (``callstorage.fairness``)."""

from __future__ import annotations

from callstorage.fairness import HOST, NAMESPACE, FairShare, endpoint_host, groups_of


def test_the_endpoint_host_is_read_from_the_raw_spec() -> None:
    assert endpoint_host({"storageType": "s3", "s3": {
        "region": "eu-west-1", "endpoint": "https://MinIO.example:9000/x"}}) == \
        "minio.example:9000"
    assert endpoint_host({"storageType": "s3", "s3": {"region": "eu-west-1"}}) == \
        "s3.eu-west-1.amazonaws.com"
    assert endpoint_host({"storageType": "abs", "abs": {"accountName": "acct"}}) == \
        "acct.blob.core.windows.net"
    assert endpoint_host({"storageType": "gcs", "gcs": {}}) == "storage.googleapis.com"
    assert endpoint_host({"storageType": "s3", "s3": "garbage"}) == \
        "s3.us-east-1.amazonaws.com"


def test_one_host_gets_a_quarter_and_one_namespace_half_of_the_workers_when_others_wait(
) -> None:
    fair: FairShare[str] = FairShare(16)
    assert fair.limits == {HOST: 4, NAMESPACE: 8}
    hang = groups_of("a", {"storageType": "s3", "s3": {"endpoint": "http://hang:1"}})
    # alone, one host borrows past its share of 4, up to 12: the last 4 stay free
    for _ in range(12):
        assert fair.try_acquire(hang) is None
    assert fair.try_acquire(hang) == (HOST, "hang:1")
    others = [groups_of(f"t{i}", {"storageType": "s3", "s3": {"endpoint": f"http://o{i}:1"}})
              for i in range(4)]
    for other in others:
        assert fair.try_acquire(other) is None, "another tenant's endpoint must get a worker"
    # the other groups now hold their shares: nobody may borrow
    assert fair.try_acquire(others[0]) is None  # under its share of 4: still served
    assert fair.try_acquire(hang) == (HOST, "hang:1")
    assert FairShare(1).limits == {HOST: 1, NAMESPACE: 1}


def test_a_shared_endpoint_is_not_held_to_its_share_while_the_others_are_idle() -> None:
    """Every storage on one endpoint (all on AWS S3): 12 of 16 validations run at once,
    not 4 (bench: the operator ran 4 HeadBuckets where a plain script ran 16)."""
    fair: FairShare[str] = FairShare(16)
    aws = [groups_of(f"t{i % 3}", {"storageType": "s3", "s3": {"region": "us-east-1"}})
           for i in range(12)]
    assert [fair.try_acquire(g) for g in aws] == [None] * 12
    assert fair.try_acquire(aws[0]) == (HOST, "s3.us-east-1.amazonaws.com")


def test_a_namespace_cannot_take_more_than_half_when_the_rest_is_busy() -> None:
    fair: FairShare[str] = FairShare(8)
    for i in range(6):  # borrows past its share of 4, up to 8 - 2
        assert fair.try_acquire(groups_of("a", {"storageType": "s3", "s3": {
            "endpoint": f"http://h{i}:1"}})) is None
    assert fair.try_acquire(groups_of("a", {"storageType": "s3", "s3": {
        "endpoint": "http://h9:1"}})) == (NAMESPACE, "a")
    assert fair.try_acquire(groups_of("b", {"storageType": "s3", "s3": {
        "endpoint": "http://h9:1"}})) is None


def test_parked_keys_are_woken_oldest_first_one_per_free_slot() -> None:
    fair: FairShare[str] = FairShare(4)  # one slot per host, borrowing up to 3 in all
    g = groups_of("a", {"storageType": "gcs"})
    for _ in range(3):
        assert fair.try_acquire(g) is None
    blocked = fair.try_acquire(g)
    assert blocked is not None
    fair.park(blocked, "k1", {"validate"})
    fair.park(blocked, "k2", {"refs"})
    fair.park(blocked, "k1", {"check"})
    assert fair.parked() == 2
    assert fair.wake((blocked,)) == [], "no slot is free yet"
    assert fair.release(g) == [("k1", {"validate", "check"}, blocked)]
    # k1's round ended without taking the slot: it hands the wake-up on
    assert fair.wake((blocked,)) == [("k2", {"refs"}, blocked)]
    assert fair.parked() == 0
    assert fair.busy(blocked) == 2
