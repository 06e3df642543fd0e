"""The digest list: subscribing and leaving by email or one click, and the
digests of what was published, fanned out to every subscriber."""
