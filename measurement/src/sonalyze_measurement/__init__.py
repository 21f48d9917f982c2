"""Sonalyze measurement service: measurement signal, jobs, uploads and acoustic analysis."""
