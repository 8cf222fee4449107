"""promoflow: an Engage-compatible personal promotions server and the integrator SDK that talks to it."""

__version__ = "0.1.0"
