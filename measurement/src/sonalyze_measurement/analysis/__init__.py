"""Service-side analysis: audio files, the signal as served, and the per-recording pipeline."""
