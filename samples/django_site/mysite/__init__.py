"""A small Django site whose users are logged in from jwt-headers' ``REMOTE_USER``."""
