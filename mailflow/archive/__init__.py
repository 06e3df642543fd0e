"""The public archive: a static site of the published cases (SPEC section 5)."""
