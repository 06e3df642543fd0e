"""mailflow: an editorial workflow run entirely over email."""

__version__ = "0.1.0"
