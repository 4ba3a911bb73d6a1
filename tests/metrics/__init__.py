"""Monitoring: collection, series, alarms, notifications, the dashboard and its HTTP API."""
