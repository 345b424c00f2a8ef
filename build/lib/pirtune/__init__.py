"""pirtune: steer generative image models with human feedback."""

__version__ = "0.1.0"
