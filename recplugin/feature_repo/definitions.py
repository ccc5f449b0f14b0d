"""Feast CLI entry: `feast -c <this folder> apply` sees the same objects `recplugin apply` registers.

Set RECPLUGIN_CONFIG (a recplugin YAML) and RECPLUGIN_DATA (its data directory) first; `recplugin apply` needs neither.
A team's own repo does the same in its definitions: see docs/adopting.md.
"""
from recplugin.features import feast_objects

globals().update(feast_objects())
