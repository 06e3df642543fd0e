"""Work that time alone causes: reminders, escalation, authors told where
their case stands, expiry of unconfirmed senders, and the cron-scheduled
jobs (the daily summary, digests, the monthly report)."""
