"""Sonalyze gateway service: websocket hub, http proxy and event router."""
