"""The admin token file, for the API: see ``processman.tokenfile``."""

from processman.tokenfile import TOKEN_ENV, ensure_token, read_token, token_path

__all__ = ["TOKEN_ENV", "ensure_token", "read_token", "token_path"]
