"""Notifications per user: made from the event log, listed and marked read."""
