"""Tables of test data shared by unit and integration tests."""
