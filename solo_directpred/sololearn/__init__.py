"""The solo-learn layer: methods registered into ``solo.methods.METHODS``, Hydra glue, entry points.

Importing :mod:`solo_directpred.sololearn.plugin` (done by the Hydra callback every shipped YAML
declares) registers everything; nothing here is imported by the framework-free core.
"""
