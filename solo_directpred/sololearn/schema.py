"""The settings schema as Hydra config nodes: every documented key exists before the command line applies.

Hydra rejects ``key=value`` for a key the composed config lacks (``use +key=value``). The shipped configs
therefore list one of these nodes first in their defaults, and the yaml's own values override it:

* ``solo_directpred_keys`` — ``method_kwargs`` of the plugin's methods and the ``spectral`` section, from
  :func:`solo_directpred.core.schema.hydra_defaults`;
* ``solo_directpred_spectral_keys`` — the ``spectral`` section alone, monitor off (upstream BYOL/SimSiam
  presets).

A config of your own gets the same by adding ``- /solo_directpred_keys@_global_`` before ``- _self_`` in
its defaults (README, "Methods"). The nodes are registered when Hydra builds its search path (the
``hydra_plugins`` module of this package) and by :func:`solo_directpred.sololearn.plugin.register`.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from solo_directpred.core.schema import hydra_defaults

KEYS_NODE = "solo_directpred_keys"
SPECTRAL_NODE = "solo_directpred_spectral_keys"


def register_nodes() -> None:
    """Store both nodes in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name=KEYS_NODE, node=hydra_defaults(), package="_global_", provider="solo-directpred")
    store.store(
        name=SPECTRAL_NODE,
        node=hydra_defaults(method_kwargs=False, spectral_enabled=False),
        package="_global_",
        provider="solo-directpred",
    )
