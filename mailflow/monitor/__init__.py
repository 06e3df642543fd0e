"""What an operator watches: health, metrics, status (SPEC section 8)."""
