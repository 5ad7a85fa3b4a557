"""The `tangle` command line: the one place that sees both the peer (`peer`) and the visualizer
(`visualizer`). The dependency runs one way: the visualizer uses the peer's API types, the peer imports
neither the visualizer nor this package."""
