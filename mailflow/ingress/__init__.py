"""Ways mail comes in; each only accepts and spools raw bytes."""
