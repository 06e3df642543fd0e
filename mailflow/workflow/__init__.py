"""What happens to a message once it is known where it was sent: the case
states and their transitions, and one module per kind of message."""
