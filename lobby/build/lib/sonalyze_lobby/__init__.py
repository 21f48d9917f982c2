"""Sonalyze lobby service: lobbies, participants, roles and the 11-step measurement protocol."""
