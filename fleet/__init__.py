"""cpppo-fleet: bring up, supervise and health-check whole plants of simulated PLCs."""

__version__ = "0.1.0"
