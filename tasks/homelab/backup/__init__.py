"""Backups with restic: the run, verification, retention, restore."""
