"""voxserve.stt: streaming speech-to-text sessions (sans-I/O)."""
