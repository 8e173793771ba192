"""routewatch: watch transfer routes from space, with honest uncertainty.

Evidence flows one way: sources -> sightings and looks -> visits -> trips -> route activity -> findings, and every
finding can be walked back to the evidence that made it.
"""

__version__ = "0.1.0"
