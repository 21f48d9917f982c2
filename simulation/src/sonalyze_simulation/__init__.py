"""Sonalyze simulation service: room acoustics simulation."""
