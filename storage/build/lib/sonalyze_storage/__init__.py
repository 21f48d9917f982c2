"""Sonalyze storage service: persistent record of devices, lobbies, measurements and results."""
