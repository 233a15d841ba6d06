"""PocketBase integration: the hook files (package data in ``hooks/``), their installer, and the
supervisor that ``pocketbase serve`` starts through them, with its bridge back into PocketBase."""
