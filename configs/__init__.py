"""Bundled YAML configs (installed as alm_offline.configs)."""
