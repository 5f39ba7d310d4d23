"""Reconcile steps: observe, diff, server-side apply, status."""
