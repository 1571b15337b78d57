"""videogen: text-to-video from the terminal with open latent video diffusion models."""

__version__ = "0.1.0"
