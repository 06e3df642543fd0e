"""Outgoing mail: templates rendered, messages composed with proper
headers, written to the outbox in the caller's transaction, and sent by a
transport afterwards."""
