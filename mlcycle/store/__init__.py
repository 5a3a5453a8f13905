"""The prediction store: what was served and what turned out true.

Below both the serving engine (which writes predictions and outcomes) and the
agents (which score them), so neither imports the other to reach the data.
"""
