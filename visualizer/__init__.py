"""The live tangle visualizer (a Bokeh server app)."""
