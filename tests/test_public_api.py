import processman


def test_public_names_are_sorted_and_exported() -> None:
    assert processman.__all__ == sorted(processman.__all__)
    for name in processman.__all__:
        assert getattr(processman, name) is not None
