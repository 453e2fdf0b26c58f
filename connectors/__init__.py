"""govbot's outer layer: the CLI now; the gateway, channels and clerk desk as they arrive."""
